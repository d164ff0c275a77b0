"""Multi-process (multi-host) runs: `jax.distributed` set up from flags, environment or SLURM.

One process per host (or per GPU) runs the same command; process 0 hosts the coordinator.
Where the three numbers come from, first match wins:

  1. arguments (launch/main.py's --coordinator_address, --num_processes, --process_id);
  2. the environment: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID;
  3. SLURM (`srun` sets SLURM_NTASKS > 1): JAX's own cluster detection.

Otherwise the run is single-process and nothing is initialised. After `initialize`, the
mesh spans every process's devices and the loop is unchanged: each process places only its
devices' slices of each batch, metrics come out of the compiled step already global, and
process 0 writes the workdir's files.
"""

from __future__ import annotations

import os
import socket
import time

import jax

from research.errors import ConfigError

ENV_ADDRESS, ENV_NUM_PROCESSES, ENV_PROCESS_ID = (
    "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def _from_env(name: str) -> int | None:
  value = os.environ.get(name)
  if value in (None, ""):
    return None
  try:
    return int(value)
  except ValueError:
    raise ConfigError(f"environment variable {name}={value!r} must be an integer.") from None


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
  """Raises a clear error if nothing listens at `address` within `timeout_s`.

  Checked before `jax.distributed.initialize`, whose own failure to connect can end the
  process from native code instead of raising.
  """
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit():
    raise ConfigError(f"--coordinator_address={address!r} must be HOST:PORT, e.g. "
                      "10.0.0.1:1234 (process 0's host).")
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
        return
    except OSError as e:
      if time.monotonic() >= deadline:
        raise ConfigError(
            f"the coordinator {address} could not be reached within {timeout_s:g} s ({e}). "
            "Start process 0 (which hosts it) with the same --coordinator_address, check the "
            "host and port, or raise --distributed_timeout.") from None
      time.sleep(0.2)


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: int = 300) -> bool:
  """Joins the run's processes (see the module docstring); False when single-process."""
  address = coordinator_address or os.environ.get(ENV_ADDRESS) or None
  num = num_processes if num_processes is not None else _from_env(ENV_NUM_PROCESSES)
  pid = process_id if process_id is not None else _from_env(ENV_PROCESS_ID)
  slurm = int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_JOB_ID" in os.environ
  if address is None and num is None and pid is None:
    if not slurm:
      return False
    _use_gloo_on_cpu()
    jax.distributed.initialize(initialization_timeout=timeout_s)
    return True
  if address is None or num is None or pid is None:
    raise ConfigError("a multi-process run needs all of --coordinator_address, --num_processes "
                      f"and --process_id (or {ENV_ADDRESS}, {ENV_NUM_PROCESSES}, "
                      f"{ENV_PROCESS_ID}); got address={address!r}, processes={num!r}, "
                      f"id={pid!r}.")
  if num < 1 or not 0 <= pid < num:
    raise ConfigError(f"--process_id={pid} must be in [0, --num_processes={num}).")
  if num == 1:
    return False
  if pid != 0:
    _wait_for_coordinator(address, timeout_s)
  _use_gloo_on_cpu()
  try:
    jax.distributed.initialize(address, num, pid, initialization_timeout=timeout_s)
  except Exception as e:  # JAX raises several types for a coordinator that never answers
    raise ConfigError(f"joining the run at {address} as process {pid} of {num} failed within "
                      f"{timeout_s} s: {str(e).splitlines()[0][:300]}. Start all {num} "
                      "processes with the same --coordinator_address.") from None
  return True


def _use_gloo_on_cpu() -> None:
  """CPU devices of different processes talk through gloo (set before the backend starts)."""
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
