"""Where workers run: local processes, or SLURM jobs through submitit.

Both run the same worker (`research.sweep.worker`) against the same study, so one sweep
definition serves a laptop and a cluster. Local workers are forked from the launcher once it
has imported JAX and the framework and before it initialises a JAX backend (`Prefork`), so
they start in milliseconds instead of paying ~2 s of imports each; a replacement worker, or
one in a process where forking is unsafe, is a fresh `python -m research.sweep.worker`.
The launcher watches its workers: one that dies (killed, out of memory, a crash) has its
running trial recorded as failed with the reason, and is replaced while the budget lasts.
Ctrl-C stops the workers with SIGTERM, so each running trial saves a checkpoint and is
retried when the same command is run again.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Protocol

import optuna
from optuna.trial import TrialState

from research.sweep import study as study_lib, worker as worker_lib

POLL_S = 0.05
STOP_GRACE_S = 60.0


class Handle(Protocol):
  label: str

  def exit_reason(self) -> str | None:
    """None while running; '' after a clean exit; otherwise why it died."""

  def stop(self) -> None: ...

  def kill(self) -> None: ...


def _gpus() -> list[str]:
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  if visible is not None:
    return [d for d in visible.split(",") if d.strip()]
  if shutil.which("nvidia-smi") is None:
    return []
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def device_groups(workers: int, per_worker: int) -> list[str | None]:
  """The CUDA_VISIBLE_DEVICES of each local worker (None: no GPU, workers share the CPU)."""
  gpus = _gpus()
  if not gpus:
    return [None] * workers
  per = per_worker or max(1, len(gpus) // workers)
  if per * workers > len(gpus):
    raise study_lib.SweepError(
        f"--workers={workers} with --devices_per_worker={per} needs {per * workers} GPUs, but "
        f"{len(gpus)} are visible ({','.join(gpus)}); lower --workers or --devices_per_worker.")
  return [",".join(gpus[i * per:(i + 1) * per]) for i in range(workers)]


def _exit_reason(code: int | None, label: str, pid: int, log_path: str) -> str | None:
  """None while a local worker runs; '' after a clean exit; otherwise why it died."""
  if code is None or code == 0:
    return None if code is None else ""
  if code < 0:
    return f"worker {label} (pid {pid}) was killed by {signal.Signals(-code).name}; see {log_path}"
  return f"worker {label} exited with code {code}: {_tail(log_path)}"


class _Process:
  """A local worker subprocess, logging to logs/worker_LABEL.log."""

  def __init__(self, sweep_dir: str, label: str, num_trials: int, devices: str | None):
    env = {**os.environ, **worker_lib.cache_env(sweep_dir)}
    if devices is not None:
      env["CUDA_VISIBLE_DEVICES"] = devices
    self.label = label
    self.log_path = worker_lib.log_path(sweep_dir, label)
    os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
    with open(self.log_path, "a") as log:
      self.process = subprocess.Popen(
          [sys.executable, "-m", "research.sweep.worker", sweep_dir, f"--worker={label}",
           f"--num_trials={num_trials}"], env=env, stdout=log, stderr=subprocess.STDOUT)

  def exit_reason(self) -> str | None:
    return _exit_reason(self.process.poll(), self.label, self.process.pid, self.log_path)

  def stop(self) -> None:
    if self.process.poll() is None:
      self.process.send_signal(signal.SIGTERM)

  def kill(self) -> None:
    if self.process.poll() is None:
      self.process.kill()
    self.process.wait()


def can_fork() -> bool:
  """Forking is safe here: one thread, and no JAX backend (its client threads) started yet."""
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  return (hasattr(os, "fork") and threading.active_count() == 1
          and not xla_bridge.backends_are_initialized())


def _forked_worker(orders: Any, parent: int) -> None:
  """The body of a pre-forked worker: wait for its orders, then run as `worker.main` does."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the launcher's to handle
  while not orders.poll(0.5):
    if os.getppid() != parent:  # the launcher died before giving orders
      os._exit(0)
  try:
    order = orders.recv()
  except EOFError:
    order = None
  if order is None:  # the sweep ended (bad input, nothing left to run) before it started
    os._exit(0)
  sweep_dir, label, num_trials, devices = order
  with open(worker_lib.log_path(sweep_dir, label), "a") as log:
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
  if devices is not None:
    os.environ["CUDA_VISIBLE_DEVICES"] = devices
  print(f"worker {label}: forked from the launcher (pid {parent})", flush=True)
  worker_lib.serve_and_exit(sweep_dir, label, num_trials)


class _Forked:
  """A local worker forked by `Prefork`; it idles until `start` gives it its orders."""

  def __init__(self, context: Any):
    self.label = ""
    self.log_path = ""
    orders, self.sender = context.Pipe(duplex=False)
    self.process = context.Process(target=_forked_worker, args=(orders, os.getpid()))
    self.process.start()
    orders.close()  # the child's end

  def start(self, sweep_dir: str, label: str, num_trials: int, devices: str | None) -> "_Forked":
    self.label = label
    self.log_path = worker_lib.log_path(sweep_dir, label)
    os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
    self.sender.send((sweep_dir, label, num_trials, devices))
    self.sender.close()
    return self

  def dismiss(self) -> None:
    """Tells an idle worker it is not needed, and waits for it to go."""
    try:
      self.sender.send(None)
      self.sender.close()
    except OSError:
      pass
    self.process.join(timeout=10)
    if self.process.exitcode is None:
      self.process.kill()

  def exit_reason(self) -> str | None:
    return _exit_reason(self.process.exitcode, self.label, self.process.pid, self.log_path)

  def stop(self) -> None:
    if self.process.exitcode is None:
      os.kill(self.process.pid, signal.SIGTERM)

  def kill(self) -> None:
    if self.process.exitcode is None:
      self.process.kill()
    self.process.join()


class Prefork:
  """Local workers forked now, while the launcher is still free of threads and JAX backends.

  The launcher then validates the sweep and creates the study (which initialises JAX); the
  workers wait meanwhile, holding the launcher's imports (JAX, Flax, orbax, Optuna's
  SQLAlchemy storage) for free through copy-on-write. Workers never given orders are
  dismissed by `close`. Where forking is unsafe (threads, a live JAX backend: e.g. inside a
  test process) it forks nothing, and the sweep starts subprocesses as before.
  """

  def __init__(self, workers: int):
    self.idle: list[_Forked] = []
    if can_fork():
      context = multiprocessing.get_context("fork")
      self.idle = [_Forked(context) for _ in range(workers)]

  def take(self) -> _Forked | None:
    return self.idle.pop(0) if self.idle else None

  def close(self) -> None:
    while self.idle:
      self.idle.pop().dismiss()


class _SubmititJob:
  """A worker submitted through submitit (a SLURM job; 'local' / 'debug' in tests)."""

  def __init__(self, job: Any, label: str):
    self.job, self.label = job, label

  def exit_reason(self) -> str | None:
    if not self.job.done():
      return None
    error = self.job.exception()
    if error is None:
      return ""
    return f"worker {self.label} (job {self.job.job_id}) failed: {str(error).strip()[-300:]}"

  def stop(self) -> None:
    self.job.cancel(check=False)

  def kill(self) -> None:
    self.job.cancel(check=False)


def _tail(path: str, lines: int = 5) -> str:
  try:
    with open(path) as f:
      return " | ".join(l.strip() for l in f.readlines()[-lines:])
  except OSError:
    return f"(no log at {path})"


def supervise(study: optuna.Study, num_trials: int, workers: int,
              start: Callable[[int, str], Handle], progress: Callable[[], None]) -> None:
  """Runs `workers` workers until the budget is spent, replacing any that die mid-sweep.

  A replacement gets a new label (`0.1`, `0.2`, ...), so a worker that dies before running
  any trial is never replaced: the sweep then stops with its reason instead of looping.
  """
  handles = {slot: start(slot, str(slot)) for slot in range(workers)}
  restarts = {slot: 0 for slot in range(workers)}
  last_progress = 0.0
  try:
    while handles:
      for slot, handle in list(handles.items()):
        reason = handle.exit_reason()
        if reason is None:
          continue
        del handles[slot]
        if not reason:
          continue
        mine = [t for t in study.get_trials(deepcopy=False)
                if t.user_attrs.get("worker") == handle.label]
        running = [t.number for t in mine if t.state == TrialState.RUNNING]
        study_lib.fail_running(study, running, reason)
        print(f"sweep: {reason}" + (f" (trial {running} failed)" if running else ""), flush=True)
        if not mine and not handles and study_lib.used_budget(study) < num_trials:
          raise study_lib.SweepError(
              f"every worker stopped before running a trial; the last: {reason}")
        if mine and study_lib.used_budget(study) < num_trials:
          restarts[slot] += 1
          handles[slot] = start(slot, f"{slot}.{restarts[slot]}")
      if time.time() - last_progress > 2.0:
        progress()
        last_progress = time.time()
      time.sleep(POLL_S)
  except KeyboardInterrupt:
    print("sweep: interrupted; stopping the workers (their trials save a checkpoint)...",
          file=sys.stderr, flush=True)
    for handle in handles.values():
      handle.stop()
    deadline = time.time() + STOP_GRACE_S
    while any(h.exit_reason() is None for h in handles.values()) and time.time() < deadline:
      time.sleep(POLL_S)
    for handle in handles.values():
      handle.kill()
    raise
  progress()


def local(sweep_dir: str, num_trials: int, devices: list[str | None],
          prefork: Prefork | None = None) -> Callable[[int, str], Handle]:
  """Starts local worker `slot`: one OS process, with the devices of its slot to itself.

  A pre-forked worker is used while `prefork` has one; replacements are new processes.
  """

  def start(slot: int, label: str) -> Handle:
    forked = prefork.take() if prefork is not None else None
    if forked is not None:
      return forked.start(sweep_dir, label, num_trials, devices[slot])
    return _Process(sweep_dir, label, num_trials, devices[slot])

  return start


def submitit_jobs(sweep_dir: str, num_trials: int, devices_per_worker: int,
                  slurm: dict[str, Any], cluster: str = "slurm") -> Callable[[int, str], Handle]:
  """Submits worker `slot` as a job (`cluster='local'` runs the same path without SLURM)."""
  from research import cluster as cluster_lib
  job_executor = cluster_lib.executor(
      os.path.join(sweep_dir, "slurm"), cluster=cluster, name="sweep",
      gpus_per_node=devices_per_worker, cpus_per_task=slurm.get("cpus_per_task"),
      timeout_min=slurm.get("timeout_min", 60), partition=slurm.get("partition"),
      account=slurm.get("account"))
  sweep_dir = os.path.abspath(sweep_dir)

  def start(slot: int, label: str) -> Handle:
    del slot  # SLURM places the job; its devices are --gpus-per-node
    return _SubmititJob(job_executor.submit(worker_lib.run_worker, sweep_dir, label, num_trials),
                        label)

  return start
