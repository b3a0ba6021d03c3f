r"""The paper's Table 2 in one command: `--config=configs/reproduce.py:<scale>`.

  unreal-nas reproduce --config=configs/reproduce.py:paper --workdir=runs/table2 --plan
  unreal-nas reproduce --config=configs/reproduce.py:quick --workdir=runs/table2_quick

Scales:
  paper  the paper's runs: each row's search at its preset's size (25k examples, 5 warm-up + 50
         search epochs, C=16, 8 cells, batch 64; SGAS its own schedule), the seeds of a row as one
         N-seed search; every found cell retrained on each retraining set with the preset's
         network and schedule (C=36, 20 cells, batch 96, 500 epochs), then evaluated on the test
         split. Years of CPU time: `--plan` says what it costs on the machine at hand.
  quick  the same phases at CPU size, to see the whole pipeline work (docs/reproduce.md):
         the `quick` search and retraining presets made smaller still. Its numbers say
         nothing about the paper's.

Fields:
  rows              comma-separated rows, each <method>_<dataset>: method darts, sgas or pc_darts;
                    dataset rlrn, rlgd, rlrd, cifar10 or cifar100 (the search presets). Default:
                    the paper's five (DARTS on RLRD, RLGD, RLRN and CIFAR-10 labels; SGAS on RLGD).
  retrain           comma-separated retraining sets: cifar10, cifar100.
  seeds             searches per row, run as one N-seed search (seeds seed .. seed+N-1); the cell
                    of seed k is retrained with seed seed+k.
  seed              the first seed.
  search_scale, train_scale
                    comma-separated field=value that the scale sets in every search and
                    retraining config (quick: the sizes below; paper: nothing).
  search_overrides  comma-separated field=value set in every search config after the scale's
                    (e.g. 'search.epochs=20,search.order=2').
  train_overrides   the same for every retraining config (e.g. 'train.epochs=600').
  data.tfds_data_dir, data.download
                    where CIFAR-10/100 are prepared, for every phase that reads them.
  xla_fast_compile  compile with LLVM's cheap optimisation level (XLA_FLAGS, set before JAX
                    starts): about 2x faster to compile and 2x slower steps on a CPU, for runs
                    that are mostly compiling (quick: True).
"""

import ml_collections

from unreal_nas_jax.config_utils import parse_preset

SCALES = ('paper', 'quick')
PAPER_ROWS = 'darts_rlrd,darts_rlgd,darts_rlrn,darts_cifar10,sgas_rlgd'

# The quick scale on top of the `quick` presets: sized so that the whole default reproduction
# (5 searches of 3 seeds, 30 retrainings and evaluations) runs in minutes on a 2-core CPU, where
# compiling its programs is most of the time (docs/reproduce.md).
# Searches: C=4, 3 cells of 2 nodes (not DARTS's 4: the programs compile about 40% faster), 8x8
# images, 128 examples, 4 epochs (SGAS: an edge decided after each), one compiled step (no
# warm-up). Retraining: C=4, 3 cells, one epoch of 128 images, evaluated once on 128 test images,
# read through tf.data (the device path would load all 50k training images for each of the 30
# runs).
QUICK_SEARCH = (
  'data.num_examples=128,data.image_size=8,model.channels=4,model.steps=2,model.multiplier=2,'
  'search.warmup_epochs=0,search.epochs=4'
)
QUICK_TRAIN = (
  'model.channels=4,model.layers=3,train.epochs=1,train.eval_every_epochs=0,'
  'data.num_train_examples=128,data.num_eval_examples=128,data.on_device=host'
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  scale, _ = parse_preset(arg, kind='reproduce', presets=SCALES, modifiers=())
  config = ml_collections.ConfigDict()
  config.preset = arg or 'paper'
  config.scale = scale
  config.rows = PAPER_ROWS
  config.retrain = 'cifar10,cifar100'
  config.seeds = 3
  config.seed = 0
  config.search_scale = QUICK_SEARCH if scale == 'quick' else ''
  config.train_scale = QUICK_TRAIN if scale == 'quick' else ''
  config.search_overrides = ''
  config.train_overrides = ''
  config.xla_fast_compile = scale == 'quick'

  config.data = ml_collections.ConfigDict()
  config.data.tfds_data_dir = ''  # '' : ~/tensorflow_datasets
  config.data.download = False  # build CIFAR with tfds (network) where it is not prepared
  return config
