r"""Post-training int8 quantisation of a trained workdir, with accuracy before and after.

  python -m launch.quantize --workdir=runs/reproduce/fashion_mnist_cnn/seed_0 [--best] [--bits=4]

Writes WORKDIR/quantized/params_int8.npz (int8 kernels, one float32 scale per output channel,
float32 biases), params_float32.npz (the float baseline) and quantization.json (validation
and test metrics with float32 and dequantised int8 weights, bytes on disk); prints a summary.
The checkpoints are only read. A bad flag or workdir ends with one `error:` line, exit 2.
"""

from __future__ import annotations


from absl import flags

from launch.cli import report_error, run_command

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir that launch.main trained.")
_BEST = flags.DEFINE_bool("best", False, "Quantise the best checkpoint instead of the newest.")
_BITS = flags.DEFINE_integer("bits", 8, "Bits per weight, 2-8 (stored one per int8 byte); "
                             "below 8, fine-tune with config.qat.bits first (research/compress/"
                             "qat.py).")


def main() -> int:
  if not _WORKDIR.value:
    return report_error("--workdir missing: pass the workdir of a trained run.")
  from research.compress.workdir import quantize_workdir, summary
  print(summary(quantize_workdir(_WORKDIR.value, _BEST.value, _BITS.value)))
  return 0


def run() -> None:
  run_command(main, "launch.quantize")


if __name__ == "__main__":
  run()
