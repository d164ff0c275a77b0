r"""Generate text from a trained language model's workdir.

  python -m launch.sample --workdir=runs/shakespeare_char_gpt --prompt="ROMEO:" \
      --max_new_tokens=200 --temperature=0.8 --top_k=40 --num_samples=3 --seed=1

Reads only the workdir: config.json (the model), dataset.json (the vocabulary) and the newest
checkpoint (--best: the best one). The prompt is fed once, then each token is sampled in one
compiled loop over a KV cache. The prompt plus the new tokens must fit the model's context
(its block_size). Writes nothing; a bad flag or workdir ends with one `error:` line, exit 2.
"""

from __future__ import annotations


from absl import flags

from launch.cli import report_error, run_command

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir that launch.main trained.")
_PROMPT = flags.DEFINE_string("prompt", "\n", "Text to continue (default: a newline).")
_MAX_NEW = flags.DEFINE_integer(
    "max_new_tokens", 0, "Tokens to generate per sample; 0 = as many as the model's context "
    "(block_size) leaves after the prompt.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.8,
                                  "Softmax temperature; 0 = greedy (always the argmax).")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens; 0 = all.")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus sampling: the smallest set of likely "
                            "tokens with this much probability; 1 = all.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed: the same seed gives the same samples.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1, "Samples to draw (one batch).")
_BEST = flags.DEFINE_bool("best", False, "Use the best checkpoint instead of the newest.")


def main() -> int:
  if not _WORKDIR.value:
    return report_error("--workdir missing: pass the workdir of a trained run.")
  from research.generate import sample_workdir
  samples = sample_workdir(_WORKDIR.value, _PROMPT.value, _MAX_NEW.value, _TEMPERATURE.value,
                           _TOP_K.value, _TOP_P.value, _SEED.value, _NUM_SAMPLES.value,
                           _BEST.value)
  for i, text in enumerate(samples):
    if i:
      print("\n---------------")
    print(_PROMPT.value + text)
  return 0


def run() -> None:
  run_command(main, "launch.sample")


if __name__ == "__main__":
  run()
