r"""Retraining configs: `--config=configs/train.py:<preset>[,<modifier>...]`.

Presets (spec sections 5-6; the cell comes from --config.genotype: a published name such as
DARTS_V2, a genotype.json, or a search workdir whose latest checkpoint is restored):
  cifar10   NetworkCIFAR, C=36, 20 cells, batch 96, 500 epochs (UnrealNAS), SGD lr 0.025 cosine to
            0, momentum 0.9, weight decay 3e-4, clip 5, auxiliary 0.4, drop path 0.2, cutout 16.
  cifar100  the same on CIFAR-100.
  imagenet  NetworkImageNet, C=48, 14 cells, 224x224, batch 1024, 200 epochs (UnrealNAS), lr 0.5
            decayed x0.97 per epoch, weight decay 3e-5, label smoothing 0.1, auxiliary 0.4;
            ImageNet comes from a manual download (--config.data.manual_dir).
  folder    your own images: --config.data.dir=DIR holding DIR/train/<class>/*.jpg|png and
            DIR/val/<class>/... (or only the class folders: data.val_fraction of each class is
            held out, chosen by the seed); the CIFAR network and schedule, 32x32, crop/flip/cutout.
  chexpert  multi-label X-rays in CheXpert's layout: --config.data.dir=DIR with train.csv and
            valid.csv, or DIR holding the unzipped archive (DIR/CheXpert-v1.0-small/train.csv;
            image paths in column Path, relative to DIR; the 14 observations 1, 0, -1
            uncertain, blank = 0 as in the CheXpert baselines); grayscale 224x224, the ImageNet
            network (C=48, 14 cells), masked binary cross-entropy, ROC AUC per label and the
            mean over the five competition labels; 30 epochs of the ImageNet schedule.
Modifiers:
  quick      a CPU-sized run: C=8, 5 cells, batch 32, 2 epochs of 512 images, eval on 256; XLA
             optimisation level O0 (fast TPU compiles).
  fake_data  random images and labels of the right shapes through the same step (smoke tests,
             benchmarks); needs no dataset.

Data fields of the folder and CSV datasets (lists are comma-separated strings):
  data.dir             the dataset directory.
  data.channels        1 (grayscale; decoded as such) or 3.
  data.image_size      images are resized (squashed) to image_size x image_size.
  data.mean, data.std  per-channel normalisation of [0, 1] pixels ('0.5' or '0.49,0.48,0.45');
                       empty: computed from up to data.stats_images seeded training images.
  data.val_fraction    folder without val/: the fraction of each class held out.
  data.augment         crop_flip (data.crop_padding, data.cutout, data.flip), affine (rotation
                       +-data.affine_degrees, shift +-data.affine_translate of the size, scale
                       1 +- data.affine_scale, data.flip) or none.
  data.csv_train, data.csv_eval (in DIR, else in DIR/CheXpert-v1.0-small or -v1.0),
                       data.csv_path_column, data.csv_label_columns (empty: CheXpert's
                       14), data.uncertainty (ones | zeros | ignore: masked out of the loss),
                       data.auc_labels (empty: the five competition labels when present, else all).
  data.on_device       auto (CIFAR and folders that fit 1 GiB decoded, crop_flip with flips:
                       the split stays on the device, each batch augmented by a jitted function),
                       device, or host (tf.data on the host CPU).
  model.network        auto (ImageNet network from 128 pixels, else CIFAR), cifar or imagenet.
The class (label) names are written to WORKDIR/classes.json; resume and eval refuse other ones.

Run:
  unreal-nas train --config=configs/train.py:cifar10,quick,fake_data --config.genotype=DARTS_V2 \
    --workdir=/tmp/train_quick
  unreal-nas eval --workdir=/tmp/train_quick
  unreal-nas train --config=configs/train.py:folder,quick --config.data.dir=~/my_images \
    --config.genotype=DARTS_V2 --workdir=/tmp/folder_quick
"""

import ml_collections

from unreal_nas_jax.config_utils import parse_preset

PRESETS = ('cifar10', 'cifar100', 'imagenet', 'folder', 'chexpert')
MODIFIERS = ('quick', 'fake_data')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset, modifiers = parse_preset(arg, kind='train', presets=PRESETS, modifiers=MODIFIERS)
  chexpert = preset == 'chexpert'
  imagenet = preset == 'imagenet' or chexpert  # the 224-pixel network and schedule

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
  # Folder and CSV datasets (module docstring).
  config.data.dir = ''
  config.data.channels = 1 if chexpert else 3
  config.data.val_fraction = 0.1
  config.data.mean = ''  # '' : the dataset's (CIFAR, ImageNet) or computed from the data
  config.data.std = ''
  config.data.stats_images = 2000
  config.data.augment = 'affine' if chexpert else 'crop_flip'
  config.data.flip = not chexpert  # an X-ray's left and right are not interchangeable
  config.data.affine_degrees = 10.0
  config.data.affine_translate = 0.05
  config.data.affine_scale = 0.05
  config.data.csv_train = 'train.csv'
  config.data.csv_eval = 'valid.csv'
  config.data.csv_path_column = 'Path'
  config.data.csv_label_columns = ''  # '' : CheXpert's 14 observations
  config.data.uncertainty = 'ones'
  config.data.auc_labels = ''  # '' : the five competition labels
  config.data.on_device = 'auto'

  config.model = ml_collections.ConfigDict()
  config.model.channels = 48 if imagenet else 36
  config.model.layers = 14 if imagenet else 20
  config.model.auxiliary = True
  config.model.auxiliary_weight = 0.4
  config.model.drop_path = 0.0 if imagenet else 0.2  # final drop-path probability (linear ramp)
  config.model.depthwise_impl = 'auto'
  config.model.compute_dtype = 'float32'  # 'bfloat16' on GPU/TPU halves activation memory
  config.model.network = 'auto'
  # Recompute each cell's activations in the backward pass instead of keeping them: 'cells'
  # (a cell's activations in memory instead of the network's, about a third more work), 'none',
  # or 'auto' (cells on TPU, whose chips have 16-32 GB; none on GPU and CPU).
  config.model.remat = 'auto'

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 30 if chexpert else 200 if imagenet else 500
  config.train.batch_size = 256 if chexpert else 1024 if imagenet else 96  # global
  config.train.eval_every_epochs = 1
  config.train.label_smoothing = 0.1 if imagenet and not chexpert else 0.0

  config.optim = ml_collections.ConfigDict()
  config.optim.lr = 0.125 if chexpert else 0.5 if imagenet else 0.025  # 0.5 per 1024 images
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
  config.parallel.xla_optimization_level = 'default'  # 'O0'..'O3': as configs/search.py

  if 'quick' in modifiers:
    config.parallel.xla_optimization_level = 'O0'
    config.model.channels = 8
    config.model.layers = 5
    config.train.batch_size = 32
    config.train.epochs = 2
    config.data.num_train_examples = 512
    config.data.num_eval_examples = 256
    config.log.every_steps = 4
    if imagenet:
      config.data.image_size = 224
    if chexpert:
      config.data.image_size = 32  # the CPU-sized run: tiny images, the CIFAR network
  return config
