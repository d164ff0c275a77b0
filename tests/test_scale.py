"""Scaling out: gradient accumulation, remat, FSDP / tensor-parallel sharding on 8 simulated
devices, two processes with jax.distributed, and their bad inputs."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from launch.overrides import load_config
from research.errors import ConfigError
from research.models.gpt import GPT
from research.training import accumulation, batching, distributed, loop, mesh as mesh_lib
from research.training.transfer import path_name
from research.training.optimizers import make_optimizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import sharded_steps  # noqa: E402  (the 8-device script: its recipe and step count)

ENV = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "JAX_PLATFORMS": "cpu"}


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def params_of(config, workdir):
  _, state, step = loop.restore_state(config, workdir)
  return jax.device_get(state.params), step


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


# -- gradient accumulation ---------------------------------------------------------------

def test_grouped_order_puts_k_batches_where_one_big_batch_is():
  k, b = 3, 4
  small = batching.EpochOrder(50, b, seed=1, group=k)
  big = batching.EpochOrder(50, k * b, seed=1)
  assert small.steps_per_epoch == k * big.steps_per_epoch == 12  # 50 // 12 = 4 updates
  for step in range(10):  # crosses two epoch boundaries
    np.testing.assert_array_equal(small.block(k * step, k).reshape(-1), big.indices(step))


def _digits_mlp(**fields):
  config = load_config(os.path.join(ROOT, "experiments/digits_cnn.py:tiny"))
  config.model = ml_collections.ConfigDict({"name": "mlp", "hidden_sizes": (32,),
                                            "dropout_rate": 0.0})
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.5
  config.schedule.name = "constant"
  config.train.update(log_every_steps=1, steps_per_dispatch=1)
  for key, value in fields.items():
    section, name = key.split(".")
    config[section][name] = value
  return config


def test_accumulating_k_batches_of_b_is_one_sgd_step_of_kb(tmp_path):
  """The loop with 4 x 16 accumulated equals textbook SGD on the batches of 64 (by hand)."""
  config = _digits_mlp(**{"train.batch_size": 16, "optimizer.accumulate_steps": 4,
                          "train.num_steps": 8, "train.eval_every_steps": 8})
  loop.train_and_evaluate(config, str(tmp_path), test=False)
  trained, step = params_of(config, str(tmp_path))
  assert step == 8
  exp = loop.build(config)
  split = exp.dataset.splits["train"]
  order = batching.EpochOrder(len(split), 64, config.seed)
  loss_and_grad = jax.jit(jax.value_and_grad(
      lambda p, batch: exp.task.loss_and_sums(p, {}, batch, jax.random.key(0))[0]))
  params, big_losses = loop.init_state(exp).params, []
  for update in range(2):
    idx = order.indices(update)
    loss, grads = loss_and_grad(params, {"inputs": split.inputs[idx],
                                         "labels": split.labels[idx], "index": idx})
    params = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
    big_losses.append(float(loss))
  assert_trees_close(trained, params)
  # The mean loss of 4 micro-batches is the big batch's loss before each update.
  acc = [r["loss"] for r in read_jsonl(tmp_path / "metrics.jsonl") if r["split"] == "train"]
  np.testing.assert_allclose([np.mean(acc[:4]), np.mean(acc[4:])], big_losses, rtol=1e-5)


def test_accumulation_bad_values_are_config_errors():
  opt = _digits_mlp().optimizer
  opt.accumulate_steps = 0
  with pytest.raises(ConfigError, match="config.optimizer.accumulate_steps must be an integer"):
    make_optimizer(opt, _digits_mlp().schedule, 10)
  with pytest.raises(ConfigError, match="accumulate_steps must be an integer >= 1, got 2.5"):
    accumulation.from_config(ml_collections.ConfigDict({"accumulate_steps": 2.5}))
  config = _digits_mlp(**{"optimizer.accumulate_steps": 4, "train.num_steps": 10})
  with pytest.raises(ConfigError, match="accumulate_steps: batches 0-9 accumulate 4 per update, "
                     "but 10 is not a multiple of 4"):
    loop.build(config)


# -- batch-size ramp (accumulation that grows) ---------------------------------------------

RAMP = "0:1,4:2,8:4"  # batches 0-3 one per update, 4-7 two, then four


def test_ramp_counts_updates_and_batches_both_ways():
  ramp = accumulation.from_config(ml_collections.ConfigDict({"accumulate_ramp": RAMP}))
  assert (ramp.starts, ramp.ks, ramp.group, ramp.max_k) == ((0, 4, 8), (1, 2, 4), 4, 4)
  assert [ramp.updates_at(b) for b in (0, 3, 4, 6, 8, 12, 16, 20)] == [0, 3, 4, 5, 6, 7, 8, 9]
  for updates in range(12):
    assert ramp.updates_at(ramp.batches_for(updates)) == updates
  assert [int(ramp.every_k(jnp.asarray(u))) for u in range(9)] == [1, 1, 1, 1, 2, 2, 4, 4, 4]


def test_a_batch_size_ramp_is_sgd_on_growing_batches(tmp_path):
  """16 batches of 16 under the ramp = textbook SGD on batches of 16 x4, 32 x2, 64 x2."""
  config = _digits_mlp(**{"train.batch_size": 16, "optimizer.accumulate_ramp": RAMP,
                          "train.num_steps": 16, "train.eval_every_steps": 16})
  loop.train_and_evaluate(config, str(tmp_path), test=False)
  trained, step = params_of(config, str(tmp_path))
  assert step == 16
  exp = loop.build(config)
  split = exp.dataset.splits["train"]
  order = batching.EpochOrder(len(split), 16, config.seed, group=4)  # the loop's data order
  loss_and_grad = jax.jit(jax.value_and_grad(
      lambda p, batch: exp.task.loss_and_sums(p, {}, batch, jax.random.key(0))[0]))
  params, batch = loop.init_state(exp).params, 0
  for k in [1] * 4 + [2] * 2 + [4] * 2:
    idx = np.concatenate([order.indices(b) for b in range(batch, batch + k)])
    _, grads = loss_and_grad(params, {"inputs": split.inputs[idx],
                                      "labels": split.labels[idx], "index": idx})
    params = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
    batch += k
  assert_trees_close(trained, params)
  _, state, _ = loop.restore_state(config, str(tmp_path))
  assert int(state.opt_state.gradient_step) == 8  # MultiSteps counted the 8 updates


@pytest.mark.parametrize("fields, needle", [
    ({"optimizer.accumulate_ramp": "0:1,4"}, "'4' is not BATCH:K"),
    ({"optimizer.accumulate_ramp": "2:1,4:2"}, "must start at batch 0, not 2"),
    ({"optimizer.accumulate_ramp": "0:1,4:2,4:4"}, "must increase strictly"),
    ({"optimizer.accumulate_ramp": "0:1,4:0"}, "every K must be an integer >= 1"),
    ({"optimizer.accumulate_ramp": RAMP, "optimizer.accumulate_steps": 2}, "keep one"),
    ({"optimizer.accumulate_ramp": "0:2,5:4"}, "batches 0-4 accumulate 2 per update, but 5"),
    ({"optimizer.accumulate_ramp": RAMP, "train.num_steps": 14},
     "batches 8-13 accumulate 4 per update, but 6 is not a multiple of 4"),
])
def test_bad_ramps_are_config_errors(fields, needle):
  config = _digits_mlp(**{"train.num_steps": 16, **fields})
  with pytest.raises(ConfigError, match="config.optimizer.accumulate_") as error:
    loop.build(config)
  assert needle in str(error.value)


# -- remat ------------------------------------------------------------------------------------

def test_remat_gives_the_same_loss_and_gradients():
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, 11, (2, 8)), jnp.int32)
  make = lambda remat: GPT(num_outputs=11, vocab_size=11, block_size=8, num_layers=1,
                           num_heads=2, width=16, dropout_rate=0.1, remat=remat)
  # 'rbg' keys: XLA:CPU compiles their random initialisers several times faster.
  params = nn.meta.unbox(jax.jit(make(False).init)(jax.random.key(1, impl="rbg"),
                                                    tokens)["params"])

  def loss(remat):
    def f(p):
      logits = make(remat).apply({"params": p}, tokens, train=True,
                                 rngs={"dropout": jax.random.key(2, impl="rbg")})
      return jnp.mean(jax.nn.log_softmax(logits)[..., 0])
    return jax.value_and_grad(f)

  plain, remat = jax.jit(loss(False))(params), jax.jit(loss(True))(params)
  np.testing.assert_allclose(plain[0], remat[0], rtol=1e-6)
  assert_trees_close(plain[1], remat[1], rtol=1e-5, atol=1e-7)
  jaxpr = str(jax.make_jaxpr(loss(True))(params))
  assert "remat" in jaxpr or "checkpoint" in jaxpr  # the blocks really are rematerialised
  with pytest.raises(ConfigError, match="config.model.remat must be True or False"):
    GPT(num_outputs=11, vocab_size=11, block_size=8, remat="yes")


# -- sharding on 8 simulated devices, and two processes -----------------------------------------

# tests/sharded_steps.py's recipe, trained by the loop: checkpoints at steps 2 and 4.
LOOP_FIELDS = {"train.num_steps": 4, "train.checkpoint_every_steps": 2,
               "train.eval_every_steps": 4, "train.log_every_steps": 1}


def _tiny_gpt():
  return sharded_steps.tiny_gpt({}, **LOOP_FIELDS)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Background:
  """Subprocesses started together; their stderr goes to files (a full pipe that nobody reads
  would stall a process, and with it the other one at a barrier)."""

  def __init__(self, directory, commands, env):
    self.logs = [directory / f"process_{i}.log" for i in range(len(commands))]
    self.procs = []
    for command, log in zip(commands, self.logs):
      with open(log, "w") as stderr:
        self.procs.append(subprocess.Popen(command, cwd=ROOT, env=env,
                                           stdout=subprocess.DEVNULL, stderr=stderr))

  def wait(self):
    for proc in self.procs:
      proc.wait(timeout=600)
    assert [p.returncode for p in self.procs] == [0] * len(self.procs), "\n".join(
        log.read_text()[-3000:] for log in self.logs)

  def kill(self):
    for proc in self.procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module", autouse=True)
def background(tmp_path_factory):
  """The subprocess runs of this module, started at once so that they overlap each other
  and the in-process tests: tests/sharded_steps.py on 8 simulated devices, and the tiny
  GPT trained by two processes (`launch.main` with jax.distributed)."""
  tmp = tmp_path_factory.mktemp("scale")
  (tmp / "sharded").mkdir()
  (tmp / "two").mkdir()
  sharded = Background(tmp / "sharded", [[
      sys.executable, os.path.join(ROOT, "tests/sharded_steps.py"),
      str(tmp / "sharded/out.json"), str(tmp / "sharded/ckpt")]],
      dict(ENV, XLA_FLAGS="--xla_force_host_platform_device_count=8"))
  flags = [f"--config={os.path.join(ROOT, sharded_steps.RECIPE)}",
           f"--workdir={tmp / 'two/run'}", f"--coordinator_address=127.0.0.1:{_free_port()}",
           "--num_processes=2", "--mode=train", "--distributed_timeout=120",
           *[f"--config.{k}={v}" for k, v in {**sharded_steps.FIELDS, **LOOP_FIELDS}.items()]]
  two = Background(tmp / "two", [[sys.executable, "-m", "launch.main", *flags,
                                  f"--process_id={i}"] for i in range(2)], ENV)
  yield {"sharded": sharded, "two": two, "dir": tmp}
  sharded.kill()
  two.kill()


@pytest.fixture(scope="module")
def sharded(background):
  """What tests/sharded_steps.py measured on 8 simulated CPU devices."""
  background["sharded"].wait()
  return json.loads((background["dir"] / "sharded/out.json").read_text())


def test_fsdp_and_tensor_parallel_match_one_device(sharded):
  assert sharded["devices"] == 8
  for mesh in ("fsdp", "tensor"):
    np.testing.assert_allclose(sharded[mesh]["losses"], sharded["one"]["losses"], rtol=2e-6)
  weights = {"block0/attn/proj/kernel", "block0/attn/qkv/kernel", "block0/fc/kernel",
             "block0/fc_proj/kernel"}
  assert set(sharded["fsdp"]["sharded_params"]) == weights | {"position_embed",
                                                               "token_embed/embedding"}
  # Tensor parallelism splits attention and MLP; the 65-token vocabulary does not split by 4.
  assert set(sharded["tensor"]["sharded_params"]) == weights
  # Attention splits by whole heads, so the step gathers nothing; it only all-reduces
  # (Megatron's two per block forward and backward, the data-parallel gradients, the metrics).
  # The fused qkv split by columns, as before, needed 2 all-gathers here.
  assert sharded["tensor"]["collectives"]["all-gather"] == 0
  assert sharded["one"]["collectives"] == dict.fromkeys(sharded["one"]["collectives"], 0)


def test_sharded_state_shrinks_per_device_by_the_expected_factor(sharded):
  for mesh in ("one", "fsdp", "tensor"):
    run = sharded[mesh]
    # What the compiled step returns per device is the state (plus the metric totals).
    assert abs(run["compiled_output_bytes"] - run["state_bytes_per_device"]) <= 1024, run
  one = sharded["one"]["state_bytes_per_device"]
  # FSDP over 8: everything but LayerNorm scales and biases (1.5 KB of 173 KB) splits 8 ways.
  assert one / sharded["fsdp"]["state_bytes_per_device"] > 7.5
  # Tensor parallel over 4: the block's four matrices (49 KB of its 59 KB of parameters).
  assert 2.5 < one / sharded["tensor"]["state_bytes_per_device"] < 4


def test_checkpoints_restore_across_layouts(sharded):
  """FSDP-sharded state restores onto one device and one device's onto the FSDP mesh."""
  for direction in ("fsdp_onto_one", "one_onto_fsdp"):
    assert sharded[direction] == {"step": 3, "shardings_of_target": True, "max_abs_diff": 0.0}


def test_batch_the_mesh_cannot_split_is_a_config_error(sharded):
  assert sharded["indivisible_batch_error"] == (
      "config.train.batch_size=12 is not divisible by the 8 devices of the batch axes "
      "(config.mesh data x fsdp = 1 x 8); use a multiple of 8.")


def test_bad_mesh_shapes_and_rules_are_config_errors():
  n = jax.device_count()
  cases = [({"fsdp": n + 1}, rf"config.mesh fsdp={n + 1} x model=1 = {n + 1} does not divide "
                             rf"the {n} visible device\(s\)"),
           ({"data": n + 1}, f"needs {n + 1} devices but {n} are visible"),
           ({"data": -1, "fsdp": -1}, "config.mesh.data and config.mesh.fsdp are both -1"),
           ({"model": 0}, "config.mesh.model must be an integer >= 1")]
  for fields, pattern in cases:
    config = mesh_lib.default_mesh_config()
    config.update(fields)
    with pytest.raises(ConfigError, match=pattern):
      mesh_lib.make_mesh(config)
  config = mesh_lib.default_mesh_config()
  config.rules = (("embed", "fdsp"),)
  with pytest.raises(ConfigError, match="maps 'embed' to unknown mesh axis 'fdsp'"):
    mesh_lib.logical_rules(config)


def test_models_without_axis_names_are_replicated():
  """An MLP names no axes: every array replicated. The GPT's weights (and their Adam moments)
  take the rules' mesh axes, even where the axis has one device."""
  P = jax.sharding.PartitionSpec
  specs = lambda config: {path_name(p): s.spec for p, s in jax.tree_util.tree_leaves_with_path(
      loop.state_sharding(loop.build(config)), is_leaf=lambda x: hasattr(x, "spec"))}
  assert set(specs(_digits_mlp()).values()) == {P()}
  gpt = specs(_tiny_gpt())
  for moment in ("params", "opt_state/1/0/mu", "opt_state/1/0/nu"):
    assert gpt[f"{moment}/block0/attn/qkv/kernel"] == P("fsdp", None, "model", None)  # heads
    assert gpt[f"{moment}/block0/fc_proj/kernel"] == P("model", "fsdp")
    assert gpt[f"{moment}/token_embed/embedding"] == P("model", "fsdp")
  assert gpt["params/block0/ln1/scale"] == P()  # unnamed: replicated
  assert sum(spec != P() for spec in gpt.values()) == 3 * 6


# -- two processes (started by the `background` fixture) ----------------------------------------

def test_two_processes_match_one_and_resume_in_one(background, sharded, caplog):
  background["two"].wait()
  workdir = background["dir"] / "two/run"
  train = [r["loss"] for r in read_jsonl(workdir / "metrics.jsonl") if r["split"] == "train"]
  assert len(train) == 4  # written once, by process 0
  # tests/sharded_steps.py trains this very recipe on one device (its "one" mesh).
  np.testing.assert_allclose(train[:sharded_steps.STEPS], sharded["one"]["losses"], rtol=1e-5)
  config = _tiny_gpt()
  p_two, step = params_of(config, str(workdir))
  assert step == 4
  # As if the two processes had been stopped after step 2: one process resumes their run.
  shutil.rmtree(workdir / "checkpoints/4")
  os.remove(workdir / "result.json")
  with caplog.at_level(logging.INFO):
    loop.train_and_evaluate(config, str(workdir), test=False)
  assert re.search(r"Resumed from .*checkpoints at step 2\.", caplog.text)
  p_resumed, step = params_of(config, str(workdir))
  assert step == 4
  assert_trees_close(p_resumed, p_two)


def test_unreachable_coordinator_fails_fast_with_a_clear_error():
  port = _free_port()  # nothing listens there
  start = time.monotonic()
  with pytest.raises(ConfigError, match=rf"coordinator 127.0.0.1:{port} could not be reached "
                                        r"within 1 s.*Start process 0"):
    distributed.initialize(f"127.0.0.1:{port}", 2, 1, timeout_s=1)
  assert time.monotonic() - start < 10
  assert jax.process_count() == 1


@pytest.mark.parametrize("args, pattern", [
    (("localhost:1234", 2, 2), r"--process_id=2 must be in \[0, --num_processes=2\)"),
    (("localhost:1234", None, 0), "needs all of --coordinator_address, --num_processes"),
    (("localhost", 2, 1), "must be HOST:PORT"),
])
def test_bad_distributed_flags_are_config_errors(args, pattern, monkeypatch):
  for name in (distributed.ENV_ADDRESS, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
    monkeypatch.delenv(name, raising=False)
  with pytest.raises(ConfigError, match=pattern):
    distributed.initialize(*args, timeout_s=1)


def test_single_process_initialises_nothing(monkeypatch):
  for name in (distributed.ENV_ADDRESS, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID,
               "SLURM_NTASKS", "SLURM_JOB_ID"):
    monkeypatch.delenv(name, raising=False)
  assert distributed.initialize() is False


def test_slurm_and_environment_are_detected(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
  monkeypatch.setattr(distributed, "_use_gloo_on_cpu", lambda: None)
  for name in (distributed.ENV_ADDRESS, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv("SLURM_JOB_ID", "17")
  monkeypatch.setenv("SLURM_NTASKS", "4")
  assert distributed.initialize(timeout_s=7) is True
  assert calls[-1] == ((), {"initialization_timeout": 7})  # JAX reads SLURM's variables
  monkeypatch.setenv("SLURM_NTASKS", "1")  # one task: nothing to join
  assert distributed.initialize() is False
  with socket.socket() as server:  # a coordinator that listens
    server.bind(("127.0.0.1", 0))
    server.listen()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    monkeypatch.setenv(distributed.ENV_ADDRESS, address)
    monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "2")
    monkeypatch.setenv(distributed.ENV_PROCESS_ID, "1")
    assert distributed.initialize(timeout_s=5) is True
  assert calls[-1] == ((address, 2, 1), {"initialization_timeout": 5})

