r"""Times the `dcgan` workload layer by layer against the same layers of torch_reference.py.

  python -m launch.bench --layers --device=cpu [--windows=5] [--steps=5] [--notorch]

`launch.bench --workload=dcgan` gives one number for the whole two-player step; this says
where its time goes. Each row is one layer of the bench's networks (torch_reference's
`dcgan_models()`: the TensorFlow tutorial's generator and a two-conv discriminator) at the
bench's batch: the forward pass, then forward plus the gradients with respect to the input
and the parameters (a GAN step needs both). The framework side is the layer the framework's
`dcgan` model runs (`nn.Conv` with `research.models.conv.conv_general_dilated`,
`research.models.gan.UpConv`, `nn.Dense`, `nn.BatchNorm`), jitted; the torch side is the
module taken from `dcgan_models()` itself. Windows alternate between the two, as in
`launch.bench`; ratio = torch ms / framework ms (> 1: faster here).
CPU only: torch's side is not synchronised with a GPU.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any, Callable


@dataclasses.dataclass
class Layer:
  """One layer: its flax module and NHWC input shape, and its index in torch's Sequential."""
  name: str
  module: Callable[[], Any]
  input_shape: tuple[int, ...]  # without the batch
  network: str                  # 'generator' or 'discriminator' of dcgan_models()
  index: int


def layers() -> list[Layer]:
  import flax.linen as nn
  from research.models.conv import conv_general_dilated
  from research.models.gan import UpConv
  conv = lambda f, k, s, bias: nn.Conv(f, (k, k), (s, s), padding="SAME", use_bias=bias,
                                       conv_general_dilated=conv_general_dilated)
  return [
      Layer("G dense 100 -> 7x7x256", lambda: nn.Dense(7 * 7 * 256, use_bias=False), (100,),
            "generator", 0),
      Layer("G batchnorm 7x7x256", lambda: nn.BatchNorm(use_running_average=False),
            (7, 7, 256), "generator", 2),
      Layer("G conv 5x5 7x7x256 -> 7x7x128", lambda: conv(128, 5, 1, False), (7, 7, 256),
            "generator", 4),
      Layer("G upconv 7x7x128 -> 14x14x64", lambda: UpConv(64, use_bias=False), (7, 7, 128),
            "generator", 7),
      Layer("G upconv 14x14x64 -> 28x28x1", lambda: UpConv(1, use_bias=False), (14, 14, 64),
            "generator", 10),
      Layer("D conv 28x28x1 -> 14x14x64", lambda: conv(64, 4, 2, True), (28, 28, 1),
            "discriminator", 0),
      Layer("D conv 14x14x64 -> 7x7x128", lambda: conv(128, 4, 2, False), (14, 14, 64),
            "discriminator", 2),
  ]


class JaxLayer:
  """Forward, or forward and both gradients, of a flax layer, jitted; `run()` dispatches."""
  k = 1

  def __init__(self, layer: Layer, batch: int, backward: bool):
    import jax
    import jax.numpy as jnp
    module = layer.module()
    self.x = jax.random.normal(jax.random.key(0), (batch,) + layer.input_shape)
    self.variables = module.init(jax.random.key(1), self.x)
    mutable = ["batch_stats"] if "batch_stats" in self.variables else False

    def forward(variables, x):
      out = module.apply(variables, x, mutable=mutable)
      return out[0] if mutable else out

    loss = lambda variables, x: jnp.sum(jnp.square(forward(variables, x)))
    self.fn = jax.jit(jax.grad(loss, argnums=(0, 1)) if backward else forward)
    self.out = None

  def run(self) -> None:
    self.out = self.fn(self.variables, self.x)

  def sync(self) -> None:
    import jax
    jax.block_until_ready(self.out)


class TorchLayer:
  """The same for a torch module (NCHW input), as torch_reference times its steps."""
  k = 1

  def __init__(self, module: Any, layer: Layer, batch: int, backward: bool):
    import torch
    shape = layer.input_shape
    nchw = (shape[-1],) + tuple(shape[:-1]) if len(shape) == 3 else shape
    self.torch, self.module, self.backward = torch, module, backward
    self.x = torch.randn((batch,) + nchw, requires_grad=backward)

  def run(self) -> None:
    if self.backward:
      self.module.zero_grad(set_to_none=True)
      self.x.grad = None
      self.module(self.x).square().sum().backward()
    else:
      with self.torch.no_grad():
        self.module(self.x)

  def sync(self) -> None:
    pass  # CPU: torch's calls return when done


def table(rows: list[dict[str, Any]]) -> str:
  """The rows in Markdown, with the ratio torch ms / framework ms of forward + gradients."""
  from research.report.table import markdown_table
  fmt = lambda v: "-" if v is None else f"{v:.2f}"
  ratio = lambda r: ("-" if r["torch_fwd_bwd_ms"] is None
                     else f"{r['torch_fwd_bwd_ms'] / r['fwd_bwd_ms']:.2f}x")
  cells = [[r["layer"], fmt(r["fwd_ms"]), fmt(r["torch_fwd_ms"]), fmt(r["fwd_bwd_ms"]),
            fmt(r["torch_fwd_bwd_ms"]), ratio(r)] for r in rows]
  return markdown_table(["layer", "framework fwd ms", "torch fwd ms", "framework fwd+bwd ms",
                         "torch fwd+bwd ms", "ratio fwd+bwd"], cells)


def measure(batch: int, windows: int, steps: int, reference: Any | None,
            time_interleaved: Callable[..., list[list[float]]]) -> list[dict[str, Any]]:
  """One row per layer: median ms of forward and of forward + gradients, both frameworks
  (torch's None without a `reference` module). `time_interleaved` is launch.bench's timer
  (passed in: launch.bench runs as __main__, so importing it here would load it twice)."""
  nets = dict(zip(("generator", "discriminator"), reference.dcgan_models())) if reference \
      else None
  rows = []
  for layer in layers():
    row: dict[str, Any] = {"layer": layer.name, "batch": batch}
    for backward, key in ((False, "fwd_ms"), (True, "fwd_bwd_ms")):
      candidates: list[Any] = [JaxLayer(layer, batch, backward)]
      if nets:
        candidates.append(TorchLayer(nets[layer.network][layer.index], layer, batch, backward))
      times = [statistics.median(w) for w in time_interleaved(candidates, steps, 2, windows)]
      row[key] = times[0]
      row[f"torch_{key}"] = times[1] if nets else None
    rows.append(row)
  return rows
