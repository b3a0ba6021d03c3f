r"""Retraining configs: `--config=configs/train.py:<preset>[,<modifier>...]`.

Presets (spec sections 5-6; the cell comes from --config.genotype: a published name such as
DARTS_V2, a genotype.json, or a search workdir whose latest checkpoint is restored):
  cifar10   NetworkCIFAR, C=36, 20 cells, batch 96, 500 epochs (UnrealNAS), SGD lr 0.025 cosine to
            0, momentum 0.9, weight decay 3e-4, clip 5, auxiliary 0.4, drop path 0.2, cutout 16.
  cifar100  the same on CIFAR-100.
  imagenet  NetworkImageNet, C=48, 14 cells, 224x224, batch 1024, 200 epochs (UnrealNAS), lr 0.5
            decayed x0.97 per epoch, weight decay 3e-5, label smoothing 0.1, auxiliary 0.4;
            ImageNet comes from a manual download (--config.data.manual_dir).
Modifiers:
  quick      a CPU-sized run: C=8, 5 cells, batch 32, 2 epochs of 512 images, eval on 256.
  fake_data  random images and labels of the right shapes through the same step (smoke tests,
             benchmarks); needs no dataset.

Run:
  unreal-nas train --config=configs/train.py:cifar10,quick,fake_data --config.genotype=DARTS_V2 \
    --workdir=/tmp/train_quick
  unreal-nas eval --workdir=/tmp/train_quick
"""

import ml_collections

from unreal_nas_jax.config_utils import parse_preset

PRESETS = ('cifar10', 'cifar100', 'imagenet')
MODIFIERS = ('quick', 'fake_data')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset, modifiers = parse_preset(arg, kind='train', presets=PRESETS, modifiers=MODIFIERS)
  imagenet = preset == 'imagenet'

  config = ml_collections.ConfigDict()
  config.preset = arg or 'cifar10'
  config.seed = 0
  config.genotype = ''  # a published name, a genotype.json or a search workdir (required)

  config.data = ml_collections.ConfigDict()
  config.data.name = preset
  config.data.image_size = 224 if imagenet else 32
  config.data.tfds_data_dir = ''  # '' : ~/tensorflow_datasets
  config.data.manual_dir = ''  # ImageNet: directory holding the ILSVRC2012 tar files
  config.data.download = False  # CIFAR: build the tfds dataset (network) if not prepared
  config.data.fake_data = 'fake_data' in modifiers
  config.data.num_train_examples = 0  # 0: the whole training split
  config.data.num_eval_examples = 0  # 0: the whole test/validation split
  config.data.cutout = 0 if imagenet else 16
  config.data.crop_padding = 4  # CIFAR random crop

  config.model = ml_collections.ConfigDict()
  config.model.channels = 48 if imagenet else 36
  config.model.layers = 14 if imagenet else 20
  config.model.auxiliary = True
  config.model.auxiliary_weight = 0.4
  config.model.drop_path = 0.0 if imagenet else 0.2  # final drop-path probability (linear ramp)
  config.model.depthwise_impl = 'auto'
  config.model.compute_dtype = 'float32'  # 'bfloat16' on GPU/TPU halves activation memory

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 200 if imagenet else 500
  config.train.batch_size = 1024 if imagenet else 96  # global, split over devices
  config.train.eval_every_epochs = 1
  config.train.label_smoothing = 0.1 if imagenet else 0.0

  config.optim = ml_collections.ConfigDict()
  config.optim.lr = 0.5 if imagenet else 0.025
  config.optim.lr_schedule = 'exponential' if imagenet else 'cosine'
  config.optim.lr_decay = 0.97  # exponential: lr * decay^epoch
  config.optim.lr_min = 0.0  # cosine floor
  config.optim.momentum = 0.9
  config.optim.weight_decay = 3e-5 if imagenet else 3e-4
  config.optim.grad_clip = 5.0

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.max_to_keep = 3  # latest epoch ends kept; 0 keeps every epoch
  config.checkpoint.keep_period = 0  # also keep every N-th epoch end; 0 disables
  config.checkpoint.every_steps = 0  # also inside epochs, every N steps; 0 disables
  config.checkpoint.every_minutes = 10.0  # also inside epochs, every M minutes; 0 disables
  config.checkpoint.dir = ''  # '': WORKDIR/checkpoints (local or gs://)

  config.log = ml_collections.ConfigDict()
  config.log.progress = 'auto'
  config.log.every_steps = 50
  config.log.sync_every_steps = 10

  config.parallel = ml_collections.ConfigDict()
  config.parallel.num_devices = 0

  if 'quick' in modifiers:
    config.model.channels = 8
    config.model.layers = 5
    config.train.batch_size = 32
    config.train.epochs = 2
    config.data.num_train_examples = 512
    config.data.num_eval_examples = 256
    config.log.every_steps = 4
    if imagenet:
      config.data.image_size = 224
  return config
