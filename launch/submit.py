r"""Submit a training run to SLURM through submitit: one task per node, every node one process.

  python -m launch.submit --nodes=2 --gpus_per_node=8 --slurm_partition=gpu \
      --slurm_timeout_min=600 -- \
      --config=experiments/gpt2_small.py --workdir=/shared/runs/gpt2 \
      --config.mesh.fsdp=-1 --config.mesh.data=1

Everything after `--` is `launch.main`'s command line, checked here (experiment, overrides,
workdir) before anything is queued. Each SLURM task runs `python -m launch.main` with it;
`launch.main` sees SLURM's variables and joins the tasks into one JAX run (research/training/
distributed.py), exactly as under a hand-written `srun`. The job's scripts and logs go to
WORKDIR/slurm/ (the workdir must be on a filesystem all nodes share). `--wait` blocks until
the job ends and exits with its status. The sweep's SLURM executor submits through the same
`research.cluster.executor`, so the resource flags mean the same in both.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from launch import overrides
from launch.cli import report_error, run_command

_NODES = flags.DEFINE_integer("nodes", 1, "Nodes (one launch.main process each).")
_GPUS = flags.DEFINE_integer("gpus_per_node", 0, "GPUs per node (0: none asked).")
_CPUS = flags.DEFINE_integer("cpus_per_task", None, "CPUs per task (SLURM's default if unset).")
_TIMEOUT = flags.DEFINE_integer("slurm_timeout_min", 60, "Time limit of the job, minutes.")
_PARTITION = flags.DEFINE_string("slurm_partition", None, "SLURM partition.")
_ACCOUNT = flags.DEFINE_string("slurm_account", None, "SLURM account.")
_CLUSTER = flags.DEFINE_enum("cluster", "slurm", ["slurm", "local"],
                             "slurm, or local: the same job as a local process (tests).")
_WAIT = flags.DEFINE_bool("wait", False, "Wait for the job and exit with its status.")

_train_args: list[str] = []


def _workdir(args: list[str]) -> str | None:
  for i, arg in enumerate(args):
    name, eq, value = arg.partition("=")
    if name in ("--workdir", "-workdir"):
      return value if eq else (args[i + 1] if i + 1 < len(args) else None)
  return None


def main() -> int:
  args = _train_args
  if not any(a.startswith(("--config=", "-config=")) for a in args):
    return report_error("no --config after `--`: pass launch.main's command line after `--`, "
                        "e.g. -- --config=experiments/NAME.py --workdir=DIR.")
  workdir = _workdir(args)
  if not workdir:
    return report_error("no --workdir after `--`: the run needs a workdir on a shared "
                        "filesystem (the job's logs go to WORKDIR/slurm).")
  overrides.validate_flags(args)  # a bad experiment or override fails here, not in the queue
  from research import cluster
  job_executor = cluster.executor(
      os.path.join(workdir, "slurm"), cluster=_CLUSTER.value, name="train",
      nodes=_NODES.value, tasks_per_node=1, gpus_per_node=_GPUS.value,
      cpus_per_task=_CPUS.value, timeout_min=_TIMEOUT.value, partition=_PARTITION.value,
      account=_ACCOUNT.value)
  import submitit
  command = submitit.helpers.CommandFunction([sys.executable, "-m", "launch.main", *args],
                                             cwd=os.getcwd())
  job = job_executor.submit(command)
  print(f"submitted job {job.job_id}: {_NODES.value} node(s) x launch.main {' '.join(args)}\n"
        f"  logs: {job.paths.stdout}")
  if not _WAIT.value:
    return 0
  try:
    output = job.result()
  except Exception as e:  # pylint: disable=broad-except  (submitit wraps the job's failure)
    print(str(e)[-3000:], file=sys.stderr)
    return 1
  print(output[-3000:] if isinstance(output, str) else output)
  return 0


def run() -> None:
  global _train_args
  argv = sys.argv
  if "--" in argv:
    cut = argv.index("--")
    argv, _train_args = argv[:cut], argv[cut + 1:]
  sys.argv = argv
  run_command(main, "launch.submit")


if __name__ == "__main__":
  run()
