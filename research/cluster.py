"""SLURM through submitit: one place that turns our flags into a submitit executor.

Both the sweep's SLURM workers (`research.sweep.executors`) and multi-node training runs
(`launch.submit`) submit through `executor(...)`, so partition, account, time limit, GPUs
and CPUs mean the same thing in both. `cluster='local'` runs the very same job as a local
process (submitit's LocalExecutor): how the tests exercise this path without SLURM.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from research.errors import UserError


class ClusterError(UserError):
  """SLURM was asked for where it is not available, or with impossible resources."""


def check_slurm() -> None:
  if shutil.which("sbatch") is None:
    raise ClusterError("SLURM's `sbatch` is not on PATH here: run on a cluster login node, or "
                       "run locally (--executor=local for sweeps, launch.main for training).")


def executor(folder: str, *, cluster: str = "slurm", name: str = "research",
             nodes: int = 1, tasks_per_node: int = 1, gpus_per_node: int = 0,
             cpus_per_task: int | None = None, timeout_min: int = 60,
             partition: str | None = None, account: str | None = None) -> Any:
  """A submitit executor logging to `folder` (job scripts, stdout and stderr per job)."""
  if cluster == "slurm":
    check_slurm()
  for flag, value in (("nodes", nodes), ("tasks_per_node", tasks_per_node),
                      ("timeout_min", timeout_min)):
    if value < 1:
      raise ClusterError(f"--{flag}={value} must be >= 1.")
  if gpus_per_node < 0:
    raise ClusterError(f"--gpus_per_node={gpus_per_node} must be >= 0.")
  if cluster != "slurm" and nodes > 1:
    raise ClusterError(f"--nodes={nodes} needs SLURM; a local run has one node.")
  import submitit
  job_executor = submitit.AutoExecutor(folder=os.path.abspath(folder), cluster=cluster)
  params: dict[str, Any] = {"timeout_min": timeout_min, "name": name,
                            "tasks_per_node": tasks_per_node}
  if nodes > 1:
    params["nodes"] = nodes
  if cpus_per_task:
    params["cpus_per_task"] = cpus_per_task
  if gpus_per_node:
    params["gpus_per_node"] = gpus_per_node
  if cluster == "slurm":
    params.update({f"slurm_{k}": v for k, v in (("partition", partition),
                                                ("account", account)) if v})
  job_executor.update_parameters(**params)
  return job_executor
