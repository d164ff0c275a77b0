"""Run by tests/test_scale.py in a subprocess with 8 simulated CPU devices (XLA_FLAGS must be
set before JAX starts, hence a separate process).

  python tests/sharded_steps.py OUT.json CKPT_DIR

For each mesh of MESHES it builds the tiny GPT recipe as the loop does, compiles the train
step ahead of time (its memory_analysis gives the per-device state bytes), runs STEPS steps
and records each step's loss. It also saves the FSDP state with the loop's Checkpointer and
restores it onto a one-device mesh (and the one-device state onto the FSDP mesh), and records
the error of a batch the mesh cannot split.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from launch.overrides import load_config  # noqa: E402
from research.errors import ConfigError  # noqa: E402
from research.training import batching, checkpoint, loop, mesh as mesh_lib, steps  # noqa: E402

STEPS = 3
# "tensor" is data parallel over 2 devices and tensor parallel over 4: both at once (each
# mesh costs two compilations, so pure data parallelism is left to tests/test_training.py).
MESHES = {"one": dict(data=1), "fsdp": dict(data=1, fsdp=8), "tensor": dict(data=2, model=4)}


COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")

RECIPE = "experiments/shakespeare_char_gpt.py:tiny"
# Shrinks the recipe further (tests/test_scale.py's two-process run uses the same fields).
FIELDS = {"dataset.block_size": 8, "dataset.num_examples": 400, "model.num_layers": 1,
          "model.width": 32, "model.num_heads": 4, "train.batch_size": 16}


def tiny_gpt(mesh: dict[str, int], **fields):
  config = load_config(os.path.join(ROOT, RECIPE))
  for key, value in {**FIELDS, **fields}.items():
    section, name = key.split(".")
    config[section][name] = value
  config.mesh.update(mesh)
  return config


def run(mesh: dict[str, int]) -> tuple[dict, object, object]:
  exp = loop.build(tiny_gpt(mesh))
  state = loop.init_state(exp)
  state_sharding = jax.tree.map(lambda x: x.sharding, state)
  chunk = steps.make_train_chunk(exp.task, exp.mesh, state_sharding)
  data = batching.put_split(exp.dataset.splits["train"], exp.mesh)
  order = batching.EpochOrder(len(exp.dataset.splits["train"]), exp.config.train.batch_size, 0)
  window = batching.put_window(order, 0, exp.mesh)
  key = jax.random.key(1)
  totals = steps.init_totals(("loss", "accuracy", "count", "grad_norm"), exp.mesh)
  compiled = chunk.lower(state, totals, data, *window, key, 1).compile()
  output_bytes = compiled.memory_analysis().output_size_in_bytes
  hlo = compiled.as_text()
  losses, previous = [], 0.0
  for _ in range(STEPS):
    state, totals = compiled(state, totals, data, *window, key)
    host = jax.device_get(totals)
    losses.append((float(host["loss"]) - previous) / (float(host["count"]) / (len(losses) + 1)))
    previous = float(host["loss"])
  record = {
      "losses": losses,
      "compiled_output_bytes": int(output_bytes),
      "state_bytes_per_device": mesh_lib.bytes_per_device(state),
      "totals_bytes_per_device": mesh_lib.bytes_per_device(totals),
      "param_bytes_per_device": mesh_lib.bytes_per_device(state.params),
      # Communication the compiled train step does, by kind of collective.
      "collectives": {op: hlo.count(f" {op}(") + hlo.count(f" {op}-start(")
                      for op in COLLECTIVES},
      "sharded_params": sorted(
          name for name, leaf in _named_leaves(state.params) if not leaf.sharding.is_fully_replicated),
  }
  return record, exp, state


def _named_leaves(tree):
  from research.training.transfer import path_name
  return [(path_name(p), x) for p, x in jax.tree_util.tree_leaves_with_path(tree)]


def main(out_path: str, ckpt_dir: str) -> None:
  results = {"devices": jax.device_count()}
  states, abstract = {}, {}
  for name, mesh in MESHES.items():
    results[name], exp, state = run(mesh)
    states[name], abstract[name] = jax.device_get(state), checkpoint.abstract_like(state)
    checkpoint.Checkpointer(os.path.join(ckpt_dir, name), async_save=False).save(
        STEPS, state, {})
  # Each checkpoint restored onto the other layout (orbax reshards).
  for saved, onto in (("fsdp", "one"), ("one", "fsdp")):
    restored, _, step = checkpoint.Checkpointer(os.path.join(ckpt_dir, saved)).restore(
        abstract[onto])
    results[f"{saved}_onto_{onto}"] = {
        "step": step,
        "shardings_of_target": all(
            a.sharding == b.sharding
            for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(abstract[onto]))),
        "max_abs_diff": max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in
                            zip(jax.tree.leaves(jax.device_get(restored)),
                                jax.tree.leaves(states[saved])))}
  bad = tiny_gpt(MESHES["fsdp"])
  bad.train.batch_size = 12
  try:
    loop.build(bad)
    results["indivisible_batch_error"] = None
  except ConfigError as e:
    results["indivisible_batch_error"] = str(e)
  with open(out_path, "w") as f:
    json.dump(results, f)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2])
