r"""Write a grid of images sampled from a trained GAN's workdir (the GANs' `--mode=sample`).

  python -m launch.sample_images --workdir=runs/fashion_mnist_dcgan --num=64 --seed=0 \
      [--output=grid.png] [--best]

Reads only the workdir: config.json (the model) and the newest checkpoint (--best: the one
with the best validation FID). --seed picks the latents; seed s gives the latents of the
grids training wrote with config.task.sample_seed = s. Default output:
WORKDIR/samples/sample_step<STEP>_seed<SEED>.png. A bad flag or workdir ends with one
`error:` line, exit 2.
"""

from __future__ import annotations


from absl import flags

from launch.cli import report_error, run_command

_WORKDIR = flags.DEFINE_string("workdir", None, "A GAN workdir that launch.main trained.")
_NUM = flags.DEFINE_integer("num", 64, "Images in the grid.")
_SEED = flags.DEFINE_integer("seed", 0, "Latent seed: the same seed gives the same images.")
_OUTPUT = flags.DEFINE_string("output", "", "PNG path; '' = WORKDIR/samples/"
                              "sample_step<STEP>_seed<SEED>.png.")
_BEST = flags.DEFINE_bool("best", False, "Use the best checkpoint instead of the newest.")


def main() -> int:
  if not _WORKDIR.value:
    return report_error("--workdir missing: pass the workdir of a trained GAN.")
  from research.generate_images import write_samples
  print(write_samples(_WORKDIR.value, _NUM.value, _SEED.value, _OUTPUT.value, _BEST.value))
  return 0


def run() -> None:
  run_command(main, "launch.sample_images")


if __name__ == "__main__":
  run()
