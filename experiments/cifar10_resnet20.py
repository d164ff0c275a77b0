"""ResNet-20 of He et al. (2016), section 4.2, on CIFAR-10: the paper's own recipe.

SGD momentum 0.9, weight decay 1e-4, batch 128, learning rate 0.1 divided by 10 at 32k and 48k
iterations, 64k iterations in all, 45k/5k train/validation split, crop (pad 4) + flip.
"""

import ml_collections

from experiments._resnet import resnet_config, shrink_for_tests

REFERENCE = dict(metric="test/accuracy", value=0.9125 - 0.01, goal=">=",
                 source="He et al. 2016, Table 6: ResNet-20 8.75% error (91.25%); bound 1 point "
                        "below for seed variance")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = resnet_config("cifar10", num_epochs=0.0, crop_padding=4)
  config.model = ml_collections.ConfigDict(dict(name="cifar_resnet", depth=20, width=16))
  config.optimizer.name = "momentum"
  config.optimizer.weight_decay = 1e-4
  config.schedule.name = "step"
  config.schedule.boundaries = (32000, 48000)
  config.schedule.decay_rate = 0.1
  config.schedule.warmup_steps = 0
  config.precision = "float32"
  config.train.num_steps = 64000
  config.train.eval_every_steps = 2000
  if arg == "tiny":
    shrink_for_tests(config)
    config.schedule.boundaries = (4,)
  elif arg:
    raise ValueError(f"unknown variant {arg!r}: use 'tiny' or none")
  return config
