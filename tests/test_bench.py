"""Smoke test of launch/bench.py: it runs and reports sane records (no timings asserted).

Timings belong in BENCHMARKS.md, not in tests: they depend on the machine and its load.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from launch import bench

TORCH_REFERENCE = bench.torch_reference_path("../shared/bench/torch_reference.py")
HAVE_TORCH = importlib.util.find_spec("torch") is not None and os.path.isfile(TORCH_REFERENCE)

STEP_KEYS = {"workload", "framework", "batch", "steps_per_dispatch", "recipe_steps_per_dispatch",
             "params", "compile_s", "step_ms_median", "step_ms_min", "step_ms_max",
             "examples_per_s", "jax_version", "device_name", "date"}
LOOP_KEYS = {"workload", "measurement", "steps_per_dispatch", "log_every_steps",
             "loop_step_ms_median", "bare_step_ms_median", "overhead_pct"}


def test_mlp_step_and_loop_records(tmp_path):
  json_path = tmp_path / "bench.jsonl"
  rows = bench.run_bench(
      ["seed_mlp"], "cpu", ["recipe"], steps=2, warmup=1, windows=1,
      torch_reference=TORCH_REFERENCE if HAVE_TORCH else None, loop=True, loop_intervals=1,
      loop_interval_s=0.001, loop_repeats=1, num_train=600, json_path=str(json_path))

  ours = [r for r in rows if r["framework"] == "research" and "measurement" not in r]
  assert [r["steps_per_dispatch"] for r in ours] == [8]  # the MLP recipe's dispatch
  for row in ours:
    assert STEP_KEYS <= row.keys()
    assert row["workload"] == "seed_mlp" and row["batch"] == 64
    assert row["params"] == 784 * 500 + 500 + 500 * 10 + 10
    for key in ("step_ms_median", "step_ms_min", "examples_per_s", "compile_s"):
      assert row[key] > 0, key

  (loop_row,) = [r for r in rows if r.get("measurement") == "loop_overhead"]
  assert LOOP_KEYS <= loop_row.keys()
  assert loop_row["log_every_steps"] == 8  # cut to one dispatch by loop_interval_s
  assert loop_row["loop_step_ms_median"] > 0 and loop_row["bare_step_ms_median"] > 0

  if HAVE_TORCH:
    (torch_row,) = [r for r in rows if r["framework"] == "torch"]
    assert torch_row["params"] == ours[0]["params"]  # the same model on both sides
    assert torch_row["step_ms_median"] > 0
    assert all(r["ratio"] > 0 for r in ours)

  assert len(json_path.read_text().splitlines()) == len(rows)
  table = bench.format_tables(rows)
  assert "seed_mlp" in table and "loop overhead" in table


def test_unknown_workload_is_named():
  with pytest.raises(Exception, match="seed_mpl"):
    bench.run_bench(["seed_mpl"], "cpu", ["1"], 1, 1, 1, None, False)


@pytest.mark.parametrize("name, input_shape", [
    ("resnet18_cifar", (32, 32, 3)), ("mf_ml100k", (2,)), ("lstm_cls", (200,)),
    ("transformer_cls", (128,)), ("gpt_char", (256,)), ("seq2seq", (32,))])
def test_random_upstream_files_build_the_workload_with_the_reference_shapes(name, input_shape,
                                                                            tmp_path):
  from research.training import loop
  workload = bench.WORKLOADS[name]
  sizes = {"text": 40_000,  # characters: enough windows of 256 for one batch of 64
           "sst2": 1024,   # sentences: all 25,000 random words appear
           "multi30k": 4096}  # sentence pairs: enough subword pieces for 8,000-token vocabularies
  bench.DATA_WRITERS[workload.data](str(tmp_path), sizes.get(workload.data,
                                                             2 * workload.batch_size + 64))
  exp = loop.build(bench.make_config(name, str(tmp_path)))
  assert exp.config.train.batch_size == workload.batch_size
  assert exp.dataset.input_shape == input_shape
  if name == "lstm_cls":  # every random word is in the capped vocabulary, as in the reference
    assert exp.task.model.vocab_size == 20000
  if name == "seq2seq":  # the reference's two 8,000-token vocabularies, 32 + 32 tokens
    assert exp.dataset.model_fields == {"source_vocab_size": 8000, "target_vocab_size": 8000}
    assert exp.dataset.splits["train"].labels.shape[1] == 32


def test_dcgan_workload_matches_the_reference_networks(tmp_path):
  """The `dcgan` workload trains torch_reference.py's networks: same layers, same sizes."""
  import jax
  from research.training import loop
  bench.DATA_WRITERS["mnist"](str(tmp_path), 2 * 256 + 64)
  exp = loop.build(bench.make_config("dcgan", str(tmp_path)))
  params = jax.eval_shape(lambda: loop.init_state(exp)).params
  count = lambda tree: sum(x.size for x in jax.tree.leaves(tree))
  # torch_reference.dcgan_models(), layer by layer (BatchNorm: scale and bias); the one extra
  # parameter is the bias of the framework's output convolution.
  generator = (100 * 7 * 7 * 256 + 2 * 256 + 256 * 128 * 5 * 5 + 2 * 128 + 128 * 64 * 4 * 4
               + 2 * 64 + 64 * 1 * 4 * 4 + 1)
  discriminator = (1 * 64 * 4 * 4 + 64 + 64 * 128 * 4 * 4 + 2 * 128 + 128 * 7 * 7 + 1)
  assert count(params["generator"]) == generator
  assert count(params["discriminator"]) == discriminator


def test_dcgan_layers_are_timed_beside_the_same_torch_layers():
  """`--layers`: one row per layer of the dcgan workload; with torch, each framework layer has
  exactly as many parameters as the torch_reference module it is timed against."""
  import jax
  import numpy as np
  from launch import bench_layers
  reference = bench.load_torch_reference(TORCH_REFERENCE) if HAVE_TORCH else None
  rows = bench_layers.measure(2, 1, 1, reference, bench.time_interleaved)
  assert [r["layer"] for r in rows] == [layer.name for layer in bench_layers.layers()]
  for row in rows:
    assert row["fwd_ms"] > 0 and row["fwd_bwd_ms"] > 0
    assert (row["torch_fwd_bwd_ms"] is not None) == HAVE_TORCH
  table = bench_layers.table(rows)
  assert table.count("\n") == len(rows) + 1 and "G upconv 7x7x128 -> 14x14x64" in table
  if HAVE_TORCH:
    nets = dict(zip(("generator", "discriminator"), reference.dcgan_models()))
    for layer in bench_layers.layers():
      ours = bench_layers.JaxLayer(layer, 2, backward=False).variables.get("params", {})
      theirs = nets[layer.network][layer.index]
      assert sum(np.size(p) for p in jax.tree.leaves(ours)) == \
          sum(p.numel() for p in theirs.parameters()), layer.name


def test_layers_refuses_a_gpu_device():
  import subprocess
  import sys
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  out = subprocess.run([sys.executable, "-m", "launch.bench", "--layers", "--device=cuda",
                        "--notorch"], cwd=bench.REPO_ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode != 0
  assert "--layers times CPU layers only: pass --device=cpu." in out.stdout + out.stderr
