r"""Times the framework's compiled train steps against the PyTorch reference, in one run.

  python -m launch.bench --workload=seed_mlp,seed_cnn,seed_cnn_b1024 --device=cpu \
      --json=bench.jsonl
  python -m launch.bench --device=cuda --torch_reference=.carry/torch_reference.py

For each workload the train step is built the way `launch.main` builds it (the experiment's
config, `loop.build`, `loop.init_state`, `steps.make_train_chunk`), on MNIST-shaped random
uint8 images written as IDX files to a temporary directory: the benchmark needs no dataset
and still goes through the real data path. The step is timed like `torch_reference.py` times
its own (warm-up steps, then `--windows` windows of `--steps` steps, synchronising only at a
window's end; the median window counts). The reference's own workload function (imported from
`--torch_reference`) builds the same workload in this process, and its windows take turns with
ours, so ratio = torch ms / framework ms (> 1: we are faster) compares like with like even on
a machine that something else is using. Only same-run ratios mean anything.

The loop-overhead part runs the real `loop.train_and_evaluate` (progress, metric fetches,
jsonl/TensorBoard writes at log intervals, host-side batch indices) and compares its per-step
time between log intervals with a bare Python loop of the same compiled chunk on the same
batches. Results: a table on stdout, one JSON line per measurement in `--json`.
"""

from __future__ import annotations

import dataclasses
import datetime
import gzip
import importlib
import importlib.util
import json
import math
import os
import platform
import statistics
import struct
import sys
import tempfile
import time
from typing import Any, Sequence

from absl import app, flags, logging

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Workload:
  """A torch_reference.py workload and the experiment recipe that runs the same thing.

  `data` names the writer of random files in the dataset's upstream format (see
  `DATA_WRITERS`); `overrides` are config fields set so shapes, sizes and optimizer match the
  reference's workload exactly (e.g. its sequence length and vocabulary).
  """
  experiment: str  # module under experiments/
  batch_size: int
  data: str = "mnist"
  overrides: tuple[tuple[str, Any], ...] = ()
  torch: bool = True  # torch_reference.py has this workload (else the framework runs alone)


WORKLOADS: dict[str, Workload] = {
    "seed_mlp": Workload("mnist_mlp", 64),
    "seed_cnn": Workload("mnist_cnn", 64),
    "seed_cnn_b1024": Workload("mnist_cnn", 1024),
    # The reference trains on random tensors without augmentation: so does this one.
    "resnet18_cifar": Workload("cifar10_resnet18", 512, "cifar10", (
        ("augment.random_crop_padding", 0), ("augment.horizontal_flip", False))),
    "mf_ml100k": Workload("ml100k_mf", 1024, "movielens"),
    # One D and one G update per step at the reference's batch, with its generator (the
    # TensorFlow tutorial's: a 7x7x256 projection and a 5x5 stride-1 conv before upsampling).
    "dcgan": Workload("mnist_dcgan", 256, "mnist", (
        ("model.project_width", 256), ("model.refine_kernel", 5))),
    # Sequences as the reference's: 200 tokens of a 20,000-word vocabulary; 128 of 10,000.
    "lstm_cls": Workload("sst2_lstm", 64, "sst2", (
        ("dataset.vocab_size", 20000), ("dataset.max_length", 200))),
    "transformer_cls": Workload("sst2_transformer", 32, "sst2", (
        ("dataset.vocab_size", 10000), ("dataset.max_length", 128))),
    "gpt_char": Workload("shakespeare_char_gpt", 64, "text"),
    # The reference's nn.Transformer: 32 source and 32 target tokens, 8,000-token vocabularies,
    # separate embeddings, an untied output layer, Adam 5e-4 without clipping.
    "seq2seq": Workload("multi30k_transformer", 128, "multi30k", (
        ("dataset.vocab_size", 8000), ("dataset.max_length", 32),
        ("dataset.shared_vocabulary", False), ("model.share_embeddings", False),
        ("model.tie_output", False), ("optimizer.name", "adam"),
        ("optimizer.clip_norm", 0.0), ("optimizer.weight_decay", 0.0))),
    # GPT-2 124M's blocks (byte vocabulary): plain data parallelism vs the FSDP path, params
    # and Adam state sharded over every device (on one device: the cost of the sharding code).
    "gpt2_dp": Workload("gpt2_small", 16, "text", torch=False),
    "gpt2_fsdp": Workload("gpt2_small", 16, "text", (("mesh.data", 1), ("mesh.fsdp", -1)),
                          torch=False),
}

_WORKLOAD = flags.DEFINE_list("workload", list(WORKLOADS),
                              f"Comma-separated workloads: {', '.join(WORKLOADS)}.")
_DEVICE = flags.DEFINE_enum("device", "cpu", ["cpu", "cuda"], "Where both frameworks run.")
_STEPS = flags.DEFINE_integer("steps", 20, "Steps per timing window (torch_reference: 20); "
                              "rounded up to a multiple of steps_per_dispatch.")
_WARMUP = flags.DEFINE_integer("warmup", 5, "Warm-up steps after compilation.")
_WINDOWS = flags.DEFINE_integer("windows", 5, "Timing windows; the median counts.")
_DISPATCH = flags.DEFINE_list(
    "steps_per_dispatch", ["recipe", "1", "8"],
    "Steps per compiled call to time for each workload; 'recipe' = the experiment's own.")
_TORCH = flags.DEFINE_bool("torch", True, "Run the PyTorch reference too (needs torch).")
_TORCH_REFERENCE = flags.DEFINE_string(
    "torch_reference", "../shared/bench/torch_reference.py",
    "Path of torch_reference.py; relative paths are relative to the repository root.")
_LOOP = flags.DEFINE_bool("loop", True, "Measure the training loop's overhead too.")
_LAYERS = flags.DEFINE_bool("layers", False, "Instead of whole steps, time the dcgan "
                            "workload's layers one by one beside torch_reference's (CPU; "
                            "launch/bench_layers.py).")
_LOOP_INTERVALS = flags.DEFINE_integer(
    "loop_intervals", 5, "Log intervals timed in the loop-overhead part (after the first, "
    "which holds compilation).")
_LOOP_INTERVAL_S = flags.DEFINE_float(
    "loop_interval_s", 2.0, "Shorten the recipe's log interval to about this many seconds of "
    "training when its steps are slow, so the loop part ends in reasonable time.")
_LOOP_REPEATS = flags.DEFINE_integer(
    "loop_repeats", 4, "Runs of the real loop, alternating with runs of the bare loop (on a "
    "shared 2-core machine, 2 gave the 1 ms MLP step -5.7% to +23%; 4 gave +1.9% to +2.6%).")
_COMPILATION_CACHE = flags.DEFINE_bool(
    "compilation_cache", True, "Share compiled executables through a temporary persistent "
    "cache, so the real and the bare loop run the very same executable (on GPU, separate "
    "compilations may autotune to different kernels and differ by a few percent).")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 0, "Random training examples to generate; 0 = "
                                  "the workload's data default (see TRAIN_EXAMPLES).")
_JSON = flags.DEFINE_string("json", None, "Append one JSON line per measurement to this file.")


# ----------------------------------------------------------------------------- environment

def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def environment() -> dict[str, Any]:
  """Versions and device, recorded with every result: a number without them means little."""
  import flax
  import jax
  import jaxlib
  import optax
  device = jax.devices()[0]
  return {
      "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
      "jax_version": jax.__version__, "jaxlib_version": jaxlib.__version__,
      "flax_version": flax.__version__, "optax_version": optax.__version__,
      "backend": jax.default_backend(),
      "device_name": device.device_kind if device.platform != "cpu" else cpu_model(),
      "device_count": jax.device_count(), "cpu_count": os.cpu_count(),
      # Other processes on the machine skew CPU timings (torch's OpenMP threads most of all).
      "load_avg_1m": round(os.getloadavg()[0], 2),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),  # e.g. YNNPACK on/off changes CPU convs
  }


# ----------------------------------------------------------------------------- data

def _write_idx(path: str, array: Any) -> None:
  payload = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
  with open(path, "wb") as f:
    f.write(gzip.compress(payload + array.tobytes(), compresslevel=1))


def write_random_mnist(directory: str, num_train: int, num_test: int = 1000, seed: int = 0) -> str:
  """Upstream-named MNIST IDX files of random images and labels.

  Writing files (instead of handing the loop an in-memory Dataset) lets the benchmark call the
  unmodified `loop.build` / `loop.train_and_evaluate`, so it times exactly what users run.
  """
  import numpy as np
  from research.data import mnist
  rng = np.random.default_rng(seed)
  for split, n in (("train", num_train), ("test", num_test)):
    images_file, labels_file = mnist.FILES[split]
    _write_idx(os.path.join(directory, images_file),
               rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
    _write_idx(os.path.join(directory, labels_file),
               rng.integers(0, 10, size=(n,), dtype=np.uint8))
  return directory


def write_random_cifar10(directory: str, num_train: int, num_test: int = 1000,
                         seed: int = 0) -> str:
  """CIFAR-10 python batches (5 train files, 1 test file) of random images and labels."""
  import pickle

  import numpy as np
  from research.data import cifar
  rng = np.random.default_rng(seed)
  per_file = -(-num_train // len(cifar.TRAIN_FILES))
  for name, n in [(f, per_file) for f in cifar.TRAIN_FILES] + [("test_batch", num_test)]:
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"labels": rng.integers(0, 10, n).tolist()}
    with open(os.path.join(directory, name), "wb") as f:
      pickle.dump(batch, f)
  return directory


def write_random_movielens(directory: str, num_train: int, num_test: int = 1000,
                           seed: int = 0) -> str:
  """ml-100k's u.info and u1.base / u1.test: random ratings of its 943 users x 1682 items."""
  import numpy as np
  rng = np.random.default_rng(seed)
  users, items = 943, 1682
  with open(os.path.join(directory, "u.info"), "w") as f:
    f.write(f"{users} users\n{items} items\n{num_train + num_test} ratings\n")
  for name, n in (("u1.base", num_train), ("u1.test", num_test)):
    rows = np.stack([rng.integers(1, users + 1, n), rng.integers(1, items + 1, n),
                     rng.integers(1, 6, n), rng.integers(874724710, 893286638, n)], axis=1)
    with open(os.path.join(directory, name), "w") as f:
      f.writelines("\t".join(map(str, row)) + "\n" for row in rows)
  return directory


def write_random_sst2(directory: str, num_train: int, num_test: int = 256, seed: int = 0,
                      words: int = 200, vocab: int = 25000) -> str:
  """SST-2 train.tsv / dev.tsv of random sentences, `words` words each, from `vocab` words:
  every example is exactly as long as the reference's token sequences."""
  import numpy as np
  rng = np.random.default_rng(seed)
  for name, n in (("train.tsv", num_train), ("dev.tsv", num_test)):
    ids = rng.integers(0, vocab, (n, words))
    with open(os.path.join(directory, name), "w") as f:
      f.write("sentence\tlabel\n")
      f.writelines(" ".join(f"w{i}" for i in row) + f"\t{rng.integers(0, 2)}\n" for row in ids)
  return directory


def write_random_text(directory: str, num_chars: int, seed: int = 0) -> str:
  """Tiny Shakespeare's input.txt of random characters from its 65-symbol alphabet."""
  import string

  import numpy as np
  alphabet = np.array(list(string.ascii_letters + " \n!$&',-.3:;?"))
  text = "".join(np.random.default_rng(seed).choice(alphabet, num_chars))
  with open(os.path.join(directory, "input.txt"), "w") as f:
    f.write(text)
  return directory


def write_random_multi30k(directory: str, num_train: int, num_test: int = 256, seed: int = 0,
                          words: int = 40, vocab: int = 25000) -> str:
  """Multi30k's {train,val,test_2016_flickr}.{de,en}.gz of random sentences of `words` words
  from `vocab` random lower-case words per language: longer than 32 tokens, so every pair
  fills the reference's 32 + 32 tokens, and varied enough for 8,000 sentencepiece pieces."""
  import gzip
  import string

  import numpy as np
  rng = np.random.default_rng(seed)
  letters = np.array(list(string.ascii_lowercase))
  lexicon = {language: np.array(["".join(rng.choice(letters, rng.integers(3, 9)))
                                 for _ in range(vocab)]) for language in ("de", "en")}
  for stem, n in (("train", num_train), ("val", num_test), ("test_2016_flickr", num_test)):
    for language in ("de", "en"):
      rows = lexicon[language][rng.integers(0, vocab, (n, words))]
      with gzip.open(os.path.join(directory, f"{stem}.{language}.gz"), "wt") as f:
        f.writelines(" ".join(row) + "\n" for row in rows)
  return directory


DATA_WRITERS = {"mnist": write_random_mnist, "cifar10": write_random_cifar10,
                "movielens": write_random_movielens, "sst2": write_random_sst2,
                "text": write_random_text, "multi30k": write_random_multi30k}
TRAIN_EXAMPLES = {"mnist": 12000, "cifar10": 4096, "movielens": 65536, "sst2": 4096,
                  "text": 400_000, "multi30k": 4096}


def make_config(name: str, data_dir: str, steps_per_dispatch: int | None = None):
  """The workload's experiment config on the random files, batch size as the reference's."""
  workload = WORKLOADS[name]
  config = importlib.import_module(f"experiments.{workload.experiment}").get_config()
  config.dataset.source = "local"
  config.dataset.data_dir = data_dir
  config.train.batch_size = workload.batch_size
  # The schedule's length does not change a step's cost; a long one keeps any warmup valid
  # on the small random datasets.
  config.train.num_epochs = 0.0
  config.train.num_steps = 1_000_000
  for path, value in workload.overrides:
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
      node = node[part]
    node[leaf] = value
  if steps_per_dispatch:
    config.train.steps_per_dispatch = steps_per_dispatch
  if config.task.name == "gan":  # its FID needs a classifier of the same data to build
    config.task.classifier_workdir = feature_classifier(config.dataset.name, data_dir)
  return config


def feature_classifier(dataset: str, data_dir: str) -> str:
  """A workdir of the dataset's classifier experiment (`:tiny`) trained on the random files:
  a GAN task needs one to build (for its FID); its quality does not matter to a step's time."""
  from research.tasks.classifier_features import CLASSIFIER_EXPERIMENTS
  from research.training import loop
  workdir = os.path.join(data_dir, "feature_classifier")
  if not os.path.exists(os.path.join(workdir, "result.json")):
    experiment = importlib.import_module(f"experiments.{CLASSIFIER_EXPERIMENTS[dataset]}")
    config = experiment.get_config("tiny")
    config.dataset.source = "local"
    config.dataset.data_dir = data_dir
    config.dataset.num_examples = 0  # all the random files hold
    loop.train_and_evaluate(config, workdir, test=False)
  return workdir


# ----------------------------------------------------------------------------- timing

class CompiledStep:
  """The experiment's compiled chunk of `steps_per_dispatch` train steps, with its inputs.

  Built through `loop.build` / `loop.init_state` / `steps.make_train_chunk`, as the loop
  builds it. Index blocks are put on the device before timing, as the reference's data are:
  this times the step; the loop-overhead part times the host-side work around it.
  """

  def __init__(self, config):
    import jax
    from research.training import batching, loop, steps
    self.exp = exp = loop.build(config)
    self.k = config.train.steps_per_dispatch
    self.batch_size = config.train.batch_size
    self.train = batching.put_split(exp.dataset.splits["train"], exp.mesh)
    self.order = batching.EpochOrder(len(exp.dataset.splits["train"]), self.batch_size,
                                     config.seed)
    self.key = jax.random.key(config.seed + 1)
    self.state = loop.init_state(exp)
    self.chunk = steps.make_train_chunk(exp.task, exp.mesh,
                                        jax.tree.map(lambda x: x.sharding, self.state))
    example = loop._example_batch(exp, self.batch_size)
    self.metric_names = tuple(jax.eval_shape(
        lambda s, b: exp.task.train_step(s, b, self.key)[1], self.state, example))
    self.totals = steps.init_totals(self.metric_names, self.exp.mesh)
    self.calls = 0
    self.steps_done = 0  # host mirror of state.step: picks the data-order window

  @property
  def num_params(self) -> int:
    import jax
    return sum(x.size for x in jax.tree.leaves(self.state.params))

  def put_blocks(self, num_calls: int) -> None:
    """Starts timing at the current step; the data order goes on device per epoch, as in the loop."""
    del num_calls
    self.window_epoch = -1

  def run(self) -> None:
    from research.training import batching
    step, per_epoch = self.steps_done, self.order.steps_per_epoch
    if step // per_epoch != self.window_epoch:
      self.window_epoch = step // per_epoch
      self.window = batching.put_window(self.order, self.window_epoch, self.exp.mesh)
    k = min(self.k, (self.window_epoch + 2) * per_epoch - step)
    self.state, self.totals = self.chunk(self.state, self.totals, self.train, *self.window,
                                         self.key, k)
    self.steps_done += k
    self.calls += 1

  def sync(self) -> None:
    import jax
    jax.block_until_ready((self.state, self.totals))

  def check_finite(self, what: str) -> None:
    import jax
    host = jax.device_get(self.totals)
    loss = float(host["loss"]) / max(float(host["count"]), 1.0)
    if not math.isfinite(loss):
      raise RuntimeError(f"{what}: non-finite training loss {loss}")


class TorchStep:
  """One workload of torch_reference.py, built by the reference's own workload function.

  Importing the reference (rather than running its CLI) lets its windows interleave with
  ours, so a busy machine slows both alike and the ratio stays meaningful. What its `main`
  sets for CUDA (TF32, cudnn.benchmark) is set here the same way.
  """
  k = 1

  def __init__(self, reference: Any, name: str, device: str):
    import argparse
    self.ref, self.torch = reference, reference.torch
    self.dev = self.torch.device(device)
    if self.dev.type == "cuda":
      self.torch.backends.cuda.matmul.allow_tf32 = True
      self.torch.backends.cudnn.allow_tf32 = True
      self.torch.backends.cudnn.benchmark = True
    args = argparse.Namespace(wrap=lambda m: m, compile=False, quick=False, peak_tflops=989.0)
    self.torch.manual_seed(0)
    self.batch_size, self.step, model, _ = reference.WORKLOADS[name](self.dev, args)
    model.train()
    self.num_params = sum(p.numel() for p in model.parameters())
    self.name = name
    self.loss = None

  def run(self) -> None:
    self.loss = self.step()

  def sync(self) -> None:
    self.ref.sync(self.dev)

  def check_finite(self, what: str) -> None:
    if not math.isfinite(float(self.loss.detach())):
      raise RuntimeError(f"{what}: non-finite training loss")

  def record(self, ms: Sequence[float]) -> dict[str, Any]:
    """A row like torch_reference.measure's, from windows timed here."""
    median = statistics.median(ms)
    cuda = self.dev.type == "cuda"
    return {
        "workload": self.name, "framework": "torch", "torch_version": self.torch.__version__,
        "device": self.dev.type,
        "device_name": self.torch.cuda.get_device_name() if cuda else cpu_model(),
        "threads": self.torch.get_num_threads(), "compile": False,
        "dtype": "bf16-autocast" if cuda and self.name in self.ref.BF16 else "fp32",
        "batch": self.batch_size, "params": self.num_params,
        "step_ms_median": round(median, 4), "step_ms_min": round(min(ms), 4),
        "step_ms_max": round(max(ms), 4), "examples_per_s": round(self.batch_size / median * 1e3, 1),
    }


def torch_reference_path(path: str) -> str:
  """`path` itself if absolute, else relative to the repository root (not the cwd)."""
  return path if os.path.isabs(path) else os.path.normpath(os.path.join(REPO_ROOT, path))


def load_torch_reference(path: str) -> Any:
  """Imports torch_reference.py from `path` (it is a script, not an installed module)."""
  spec = importlib.util.spec_from_file_location("torch_reference", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def time_interleaved(candidates: Sequence[Any], steps: int, warmup: int,
                     windows: int) -> list[list[float]]:
  """ms per step of each window of each candidate, timed as torch_reference.measure does.

  Per candidate: `warmup` steps, then windows of `steps` steps that synchronise with the device
  only at their end (so asynchronous dispatch overlaps as in training). The candidates take
  turns window by window, in a rotating order, so that load from elsewhere on a shared machine
  falls on all of them alike.
  """
  calls = [max(1, math.ceil(steps / c.k)) for c in candidates]
  for c in candidates:
    for _ in range(math.ceil(warmup / c.k)):
      c.run()
    c.sync()
  result: list[list[float]] = [[] for _ in candidates]
  for w in range(windows):
    for j in range(len(candidates)):
      i = (j + w) % len(candidates)
      c = candidates[i]
      start = time.perf_counter()
      for _ in range(calls[i]):
        c.run()
      c.sync()
      result[i].append((time.perf_counter() - start) / (calls[i] * c.k) * 1e3)
  return result


def bench_workload(name: str, data_dir: str, dispatch: Sequence[int], reference: Any | None,
                   device: str, steps: int, warmup: int, windows: int) -> list[dict[str, Any]]:
  """Framework rows (one per steps_per_dispatch), then the torch row if a reference is given."""
  recipe_k = make_config(name, data_dir).train.steps_per_dispatch
  ours, compile_s = [], []
  for k in dispatch:
    step = CompiledStep(make_config(name, data_dir, k))
    calls = math.ceil(warmup / k) + windows * max(1, math.ceil(steps / k)) + 1
    step.put_blocks(calls)
    start = time.perf_counter()
    step.run()  # compiles
    step.sync()
    compile_s.append(time.perf_counter() - start)
    ours.append(step)
  candidates: list[Any] = list(ours)
  if reference is not None and not WORKLOADS[name].torch:
    reference = None
  if reference is not None:
    candidates.append(TorchStep(reference, name, device))
  ms = time_interleaved(candidates, steps, warmup, windows)
  for c in candidates:
    c.check_finite(name)
  rows = []
  for step, c_s, step_ms in zip(ours, compile_s, ms):
    median = statistics.median(step_ms)
    rows.append({
        "workload": name, "framework": "research", "experiment": WORKLOADS[name].experiment,
        "batch": step.batch_size, "steps_per_dispatch": step.k,
        "recipe_steps_per_dispatch": recipe_k, "precision": step.exp.config.precision,
        "params": step.num_params, "compile_s": round(c_s, 3),
        "step_ms_median": round(median, 4), "step_ms_min": round(min(step_ms), 4),
        "step_ms_max": round(max(step_ms), 4),
        "examples_per_s": round(step.batch_size / median * 1e3, 1),
        "windows_ms": [round(x, 4) for x in step_ms],
    })
  if reference is not None:
    torch_row = candidates[-1].record(ms[-1])
    torch_row["windows_ms"] = [round(x, 4) for x in ms[-1]]
    for row in rows:
      row["torch_step_ms_median"] = torch_row["step_ms_median"]
      row["torch_version"] = torch_row["torch_version"]
      row["ratio"] = round(torch_row["step_ms_median"] / row["step_ms_median"], 3)
    rows.append(torch_row)
  return rows


# ----------------------------------------------------------------------------- loop overhead

def _loop_interval(recipe_every: int, k: int, step_ms: float, target_s: float) -> int:
  """The recipe's log interval, cut to about target_s of training; a multiple of k."""
  cap = int(target_s * 1e3 / max(step_ms, 1e-6))
  return max(k, min(recipe_every, cap) // k * k)


def loop_overhead(name: str, data_dir: str, step_ms: float, intervals: int, interval_s: float,
                  repeats: int) -> dict[str, Any]:
  """Per-step time of `loop.train_and_evaluate` between log intervals vs a bare loop.

  The loop runs (intervals + 1) log intervals with evaluation and checkpointing only at the
  end; its own progress meter writes steps_per_s to metrics.jsonl at each log interval, and
  the first interval (compilation) is dropped. The bare loop dispatches the same compiled chunk
  on the same batch indices (put on the device beforehand) and times the same intervals.
  Bare and real loops alternate (bare, loop, bare, ... `repeats` loops) so that other load on
  the machine falls on both.
  """
  from research.training import loop
  config = make_config(name, data_dir)
  k = config.train.steps_per_dispatch
  every = _loop_interval(config.train.log_every_steps, k, step_ms, interval_s)
  total = every * (intervals + 1)
  config.train.num_epochs = 0.0
  config.train.num_steps = total
  config.train.log_every_steps = every
  config.train.eval_every_steps = total
  config.train.checkpoint_every_steps = total

  bare = CompiledStep(config)
  bare.put_blocks(total // k)

  def run_bare() -> list[float]:
    bare.calls = 0
    for _ in range(every // k):  # the interval the loop spends compiling: not timed
      bare.run()
    bare.sync()
    ms = []
    for _ in range(intervals):
      start = time.perf_counter()
      for _ in range(every // k):
        bare.run()
      bare.sync()
      ms.append((time.perf_counter() - start) / every * 1e3)
    return ms

  def run_loop() -> tuple[list[float], float]:
    with tempfile.TemporaryDirectory(prefix="bench_loop_") as workdir:
      start = time.perf_counter()
      loop.train_and_evaluate(config, workdir, overwrite=True, test=False)
      wall_s = time.perf_counter() - start
      with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(l) for l in f if l.strip()]
    rates = [r["steps_per_s"] for r in records if r.get("split") == "train"]
    return [1e3 / r for r in rates[1:]], wall_s

  bare_ms, loop_ms, walls = run_bare(), [], []
  for _ in range(repeats):
    ms, wall_s = run_loop()
    loop_ms += ms
    walls.append(wall_s)
    bare_ms += run_bare()
  loop_median, bare_median = statistics.median(loop_ms), statistics.median(bare_ms)
  return {
      "workload": name, "framework": "research", "measurement": "loop_overhead",
      "batch": config.train.batch_size, "steps_per_dispatch": k, "log_every_steps": every,
      "intervals": len(loop_ms), "loop_wall_s": [round(w, 2) for w in walls],
      "loop_step_ms_median": round(loop_median, 4), "bare_step_ms_median": round(bare_median, 4),
      "loop_step_ms_min": round(min(loop_ms), 4), "bare_step_ms_min": round(min(bare_ms), 4),
      "overhead_pct": round((loop_median / bare_median - 1) * 100, 2),
      "overhead_pct_of_min": round((min(loop_ms) / min(bare_ms) - 1) * 100, 2),
      "loop_intervals_ms": [round(x, 4) for x in loop_ms],
      "bare_intervals_ms": [round(x, 4) for x in bare_ms],
  }


# ----------------------------------------------------------------------------- main

def _dispatch_values(name: str, data_dir: str, values: Sequence[str]) -> list[int]:
  """--steps_per_dispatch as numbers, 'recipe' resolved per workload, duplicates dropped."""
  recipe = make_config(name, data_dir).train.steps_per_dispatch
  out: list[int] = []
  for v in values:
    k = recipe if v == "recipe" else int(v)
    if k <= 0:
      raise app.UsageError(f"--steps_per_dispatch values must be > 0 or 'recipe', got {v!r}")
    if k not in out:
      out.append(k)
  return out


def _emit(row: dict[str, Any], path: str | None) -> None:
  """Prints a record as it is made, so a long run that dies still leaves its results."""
  print(json.dumps(row), flush=True)
  if path:
    with open(path, "a") as f:
      f.write(json.dumps(row) + "\n")


def run_bench(workloads: Sequence[str], device: str, dispatch: Sequence[str], steps: int,
              warmup: int, windows: int, torch_reference: str | None, loop: bool,
              loop_intervals: int = 5, loop_interval_s: float = 2.0, loop_repeats: int = 4,
              num_train: int = 0, json_path: str | None = None) -> list[dict[str, Any]]:
  """Every measurement of the benchmark, as records (also printed as JSON lines).

  `torch_reference`: path of torch_reference.py, or None to time the framework alone.
  """
  unknown = [w for w in workloads if w not in WORKLOADS]
  if unknown:
    raise app.UsageError(f"unknown workload(s) {unknown}; choose from {list(WORKLOADS)}")
  reference = load_torch_reference(torch_reference) if torch_reference else None
  env = environment()
  if env["load_avg_1m"] > 0.5 * (env["cpu_count"] or 1):
    logging.warning("load average %.1f on %s CPUs: other processes are running; CPU timings "
                    "(PyTorch's above all) will be noisy.", env["load_avg_1m"], env["cpu_count"])
  rows: list[dict[str, Any]] = []
  with tempfile.TemporaryDirectory(prefix="bench_data_") as root:
    data_dirs: dict[str, str] = {}
    for name in workloads:
      kind = WORKLOADS[name].data
      if kind not in data_dirs:
        data_dirs[kind] = os.path.join(root, kind)
        os.makedirs(data_dirs[kind])
        DATA_WRITERS[kind](data_dirs[kind], num_train or TRAIN_EXAMPLES[kind])
      data_dir = data_dirs[kind]
      env = environment()  # per workload: the load average changes
      step_rows = bench_workload(name, data_dir, _dispatch_values(name, data_dir, dispatch),
                                 reference, device, steps, warmup, windows)
      for row in step_rows:
        row.update(env if row["framework"] == "research" else
                   {"date": env["date"], "load_avg_1m": env["load_avg_1m"]})
        _emit(row, json_path)
      rows += step_rows
      if loop:
        recipe_row = next(r for r in step_rows if r["framework"] == "research"
                          and r["steps_per_dispatch"] == r["recipe_steps_per_dispatch"])
        row = {**loop_overhead(name, data_dir, recipe_row["step_ms_median"], loop_intervals,
                               loop_interval_s, loop_repeats), **env}
        rows.append(row)
        _emit(row, json_path)
  return rows


def format_tables(rows: Sequence[dict[str, Any]]) -> str:
  """The step table (one row per framework variant, with torch's time and the ratio) and the
  loop-overhead table, in Markdown."""
  from research.report.table import markdown_table
  steps_rows, loop_rows = [], []
  for r in rows:
    if r["framework"] == "torch":
      continue
    if r.get("measurement") == "loop_overhead":
      loop_rows.append([r["workload"], r["batch"], r["steps_per_dispatch"], r["log_every_steps"],
                        f"{r['loop_step_ms_median']:.3f}", f"{r['bare_step_ms_median']:.3f}",
                        f"{r['overhead_pct']:+.1f}%"])
    else:
      k = r["steps_per_dispatch"]
      torch_ms = r.get("torch_step_ms_median")
      steps_rows.append([
          r["workload"], r["batch"], f"{k}{' (recipe)' if k == r['recipe_steps_per_dispatch'] else ''}",
          f"{r['step_ms_median']:.3f}", "-" if torch_ms is None else f"{torch_ms:.3f}",
          "-" if torch_ms is None else f"{r['ratio']:.2f}x", f"{r['examples_per_s']:.0f}",
          f"{r['compile_s']:.1f}"])
  out = markdown_table(["workload", "batch", "steps/dispatch", "framework ms/step",
                        "torch ms/step", "ratio torch/framework", "framework ex/s",
                        "compile s"], steps_rows)
  if loop_rows:
    out += "\n\n" + markdown_table(["workload", "batch", "steps/dispatch", "log every",
                                    "loop ms/step", "bare ms/step", "loop overhead"], loop_rows)
  return out


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import jax
  jax.config.update("jax_platforms", _DEVICE.value)
  if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)  # experiments/ as a package, also when run from elsewhere
  reference = None
  if _TORCH.value:
    reference = torch_reference_path(_TORCH_REFERENCE.value)
    if not os.path.isfile(reference):
      raise app.UsageError(f"--torch_reference={_TORCH_REFERENCE.value}: {reference} does not "
                           "exist; point it at ../shared/bench/torch_reference.py or pass "
                           "--notorch.")
  if _LAYERS.value:
    from launch import bench_layers
    if _DEVICE.value != "cpu":
      raise app.UsageError("--layers times CPU layers only: pass --device=cpu.")
    rows = bench_layers.measure(WORKLOADS["dcgan"].batch_size, _WINDOWS.value, _STEPS.value,
                                load_torch_reference(reference) if reference else None,
                                time_interleaved)
    torch_info = ""
    if reference:
      import torch
      torch_info = f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
    print(f"{environment_line()}{torch_info}, batch {WORKLOADS['dcgan'].batch_size}")
    print(bench_layers.table(rows))
    return
  with tempfile.TemporaryDirectory(prefix="bench_xla_cache_") as cache_dir:
    if _COMPILATION_CACHE.value:
      jax.config.update("jax_compilation_cache_dir", cache_dir)
      jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
      jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    rows = run_bench(_WORKLOAD.value, _DEVICE.value, _DISPATCH.value, _STEPS.value,
                     _WARMUP.value, _WINDOWS.value, reference, _LOOP.value, _LOOP_INTERVALS.value,
                     _LOOP_INTERVAL_S.value, _LOOP_REPEATS.value, _NUM_TRAIN.value, _JSON.value)
  torch_rows = [r for r in rows if r["framework"] == "torch"]
  torch_info = (f", torch {torch_rows[0]['torch_version']} ({torch_rows[0]['threads']} threads)"
                if torch_rows else "")
  print(f"\n{environment_line()}{torch_info}")
  print(format_tables(rows))


def environment_line() -> str:
  """Date, device, load and versions: the line above every table this prints."""
  env = environment()
  return (f"{env['date']} {env['backend']}: {env['device_name']} x{env['device_count']} "
          f"(cpu_count {env['cpu_count']}, load {env['load_avg_1m']}), jax {env['jax_version']}, "
          f"flax {env['flax_version']}, optax {env['optax_version']}")


if __name__ == "__main__":
  app.run(main)
