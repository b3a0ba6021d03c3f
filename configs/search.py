r"""Search configs: `--config=configs/search.py:<preset>[,<modifier>...]`.

Presets (UnrealNAS section 4 and appendix, DARTS search space). The unreal-data presets share the
paper's search settings: 5 warm-up + 50 search epochs, batch 64, SGD lr 0.025 cosine to 0, weight
decay 0; Adam 3e-4, betas (0.5, 0.99), architecture weight decay 0; zero-initialised alphas;
25k examples whose validation half is the same examples flipped with the same labels.
  rlrn      Gaussian noise N(0, 1) with 5000 uniform random labels ("RLRN"), generated on device.
  rlgd      FractalDB-style fractals ("RLGD"): 100 categories searched on device (fill rate >= 0.2),
            25k instances (25 variants x 4 flips, colour patches) with 5000 random labels.
  rlrd      the first 25k CIFAR-10 training images with 1000 random labels ("RLRD"); needs a
            prepared tfds cifar10 (--config.data.tfds_data_dir, or --config.data.download=True).
  cifar10   the DARTS real-data baseline: true labels, first 25k images for the weights, last 25k
            for the architecture, random crop (padding 4) and flip on both; the DARTS settings:
            no warm-up, 50 epochs, weight decay 3e-4, lr cosine to 0.001, architecture weight
            decay 1e-3, betas (0.5, 0.999), alphas 1e-3 * N(0, 1).
  cifar100  the same on CIFAR-100.
Modifiers (after the preset, in any order):
  sgas      SGAS (criterion 1; --config.search.sgas_criterion=2): an edge per cell type decided
            after search epochs 9, 14, ..., 44, the batch growing by 8 after each decision.
  pc_darts  PC-DARTS: K=4 partial channels, edge-normalisation betas, its CIFAR search settings
            (batch 256, lr 0.1, architecture Adam lr 6e-4, architecture steps from epoch 15).
  quick  a CPU-sized run of the same preset: C=8, 3 cells, 16x16 images, 512 examples, batch 32,
         1 warm-up + 3 search epochs (cifar: 4 search epochs), rlgd with 10 fractal categories;
         with sgas, a decision after each of 8 search epochs at one batch size; XLA
         optimisation level O0 (a TPU compiles it several times faster).
         Sized for a few minutes on a CPU (docs/speed.md).

Every field can be overridden, e.g. `--config.search.order=2 --config.data.num_classes=100`; the
paper's class-count ablation is a loop over --config.data.num_classes.

Run:
  unreal-nas search --config=configs/search.py:rlrn,quick --workdir=/tmp/rlrn_quick
"""

import ml_collections

from unreal_nas_jax.config_utils import ConfigError, parse_preset
from unreal_nas_jax.data.datasets import DATASETS

PRESETS = ('rlrn', 'rlgd', 'rlrd', 'cifar10', 'cifar100')
RANDOM_CLASSES = {'rlrn': 5000, 'rlgd': 5000, 'rlrd': 1000}
MODIFIERS = ('sgas', 'pc_darts', 'quick')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset, modifiers = parse_preset(arg, kind='search', presets=PRESETS, modifiers=MODIFIERS)
  if {'sgas', 'pc_darts'} <= set(modifiers):
    raise ConfigError("config modifiers 'sgas' and 'pc_darts' are not allowed together; pick one")

  config = ml_collections.ConfigDict()
  config.preset = arg or 'rlrn'
  config.seed = 0  # model init, alphas and epoch order
  config.data_seed = 0  # the unreal dataset itself (pixels and random labels)

  config.data = ml_collections.ConfigDict()
  config.data.name = preset  # rlrn | rlgd | rlrd | cifar10 | cifar100
  config.data.num_examples = 25_000  # per half: weights (train) and architecture (val)
  # Random labels; the real-data baselines keep their true classes.
  config.data.num_classes = RANDOM_CLASSES.get(preset) or DATASETS[preset].num_classes
  config.data.image_size = 32  # CIFAR images are resized when this differs from 32
  config.data.channels = 3
  # rlrn: pixel distribution.
  config.data.noise_mean = 0.0
  config.data.noise_std = 1.0
  # rlgd: FractalDB-style generation (unreal_nas_jax/data/fractals.py).
  config.data.fractal_categories = 100  # IFS systems searched (fill rate >= threshold)
  config.data.fractal_fill_threshold = 0.2
  config.data.fractal_fill_points = 100_000  # chaos-game points of the fill-rate measurement
  config.data.fractal_variation_weight = 0.4  # s of the 25 parameter-scaling variants
  config.data.fractal_color_mode = 'color'  # 'color' | 'gray'
  config.data.fractal_num_points = 0  # points per rendered image; 0: 4 per output pixel
  config.data.fractal_categories_file = ''  # reuse systems from a fractal_categories.json
  config.data.render_batch_size = 256  # images rendered at once (memory, not results)
  # rlrd, cifar10, cifar100: tensorflow-datasets.
  config.data.tfds_data_dir = ''  # '' : tfds's default (~/tensorflow_datasets)
  config.data.download = False  # build the tfds dataset (network) when it is not prepared
  config.data.crop_padding = 4  # cifar10/cifar100 augmentation: random crop padding, + flip

  config.model = ml_collections.ConfigDict()
  config.model.channels = 16  # C
  config.model.layers = 8  # cells
  config.model.steps = 4  # intermediate nodes per cell
  config.model.multiplier = 4  # nodes concatenated into the cell output
  config.model.stem_multiplier = 3
  config.model.depthwise_impl = 'auto'  # 'auto' | 'native' | 'xla' | 'shift' (ops/depthwise.py)
  # How a cell's edges are computed (models/supernet.py; the same mathematics): 'separable'
  # (depthwise then pointwise convolutions), 'dense' (one dense convolution each, branches after
  # the pixels), 'auto' (dense on GPU, separable on CPU and TPU).
  config.model.edge_form = 'auto'
  # The cells' activations: 'float32', or 'bfloat16' (GPU/TPU: half the memory traffic; weights,
  # alphas, optimizer states and BatchNorm statistics stay float32).
  config.model.compute_dtype = 'float32'

  config.search = ml_collections.ConfigDict()
  config.search.method = 'darts'  # 'darts' | 'sgas' | 'pc_darts'
  # SGAS (spec section 7): decisions after search epochs start, start + every, ... (0-based).
  config.search.sgas_criterion = 1  # 1: importance x certainty; 2: x stability
  config.search.sgas_decision_start = 9
  config.search.sgas_decision_every = 5
  config.search.sgas_batch_increase = 8  # the batch grows by this after each decision
  config.search.partial_channels = 4  # PC-DARTS's K: 1/K of the channels go through the ops
  config.search.order = 1  # 1: first-order DARTS; 2: unrolled (second-order) DARTS
  config.search.hypergradient = 'finite_difference'  # second order: 'finite_difference' | 'exact'
  config.search.fd_radius = 0.01  # finite-difference HVP: weights move by 0.01 (reference)
  config.search.warmup_epochs = 5  # weights only
  config.search.epochs = 50  # search epochs after the warm-up
  config.search.batch_size = 64  # global batch, split over devices
  config.search.alpha_init = 'zeros'  # 'zeros' (UnrealNAS) | 'normal' (DARTS: scale * N(0, 1))
  config.search.alpha_init_scale = 1e-3
  config.search.num_seeds = 1  # N independent searches (seeds seed..seed+N-1) in one program
  config.search.seeds_share_data = True  # False: seed k searches on data_seed + k
  config.search.seeds_program = 'auto'  # 'vmap' | 'map' (a loop in the program) | 'loop' | 'auto'

  config.optim = ml_collections.ConfigDict()
  config.optim.lr = 0.025  # weight SGD, cosine over warm-up + search epochs
  config.optim.lr_min = 0.0
  config.optim.momentum = 0.9
  config.optim.weight_decay = 0.0  # coupled L2 (3e-4 for real data)
  config.optim.grad_clip = 5.0  # global norm, weights only; 0 disables
  config.optim.arch_lr = 3e-4
  config.optim.arch_b1 = 0.5
  config.optim.arch_b2 = 0.99  # 0.999 in DARTS
  config.optim.arch_eps = 1e-8
  config.optim.arch_weight_decay = 0.0  # coupled L2 (1e-3 for real data)

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.max_to_keep = 5  # latest epoch ends kept; 0 keeps every epoch
  config.checkpoint.keep_period = 10  # also keep every N-th epoch end; 0 disables
  config.checkpoint.every_steps = 0  # also inside epochs, every N steps; 0 disables
  config.checkpoint.every_minutes = 10.0  # also inside epochs, every M minutes; 0 disables
  config.checkpoint.dir = ''  # '': WORKDIR/checkpoints (local or gs://)

  config.log = ml_collections.ConfigDict()
  config.log.progress = 'auto'  # 'auto' (bar on a terminal) | 'bar' | 'lines' | 'none'
  config.log.every_steps = 50  # plain-log cadence when there is no bar
  config.log.sync_every_steps = 10  # let the device catch up (keeps the bar and ETA honest)

  config.parallel = ml_collections.ConfigDict()
  config.parallel.num_devices = 0  # 0: every device; N: the first N
  # N seeds (search.num_seeds): split them over this many groups of the devices, each group
  # stepping its own seeds data parallel (1: every device steps every seed). On a TPU slice a
  # batch of 64 split 8 ways leaves each chip's lanes mostly empty; seeds per chip fill them.
  config.parallel.seed_shards = 1
  # XLA's effort on the step programs: 'default' (the compiler's) | 'O0' | 'O1' | 'O2' | 'O3'. On a
  # TPU, O0 compiles several times faster but keeps no buffers in on-chip memory, and the TPU
  # compiler estimates its steps at several times the cycles (docs/speed.md). The CPU's program
  # is the same at every level.
  config.parallel.xla_optimization_level = 'default'

  if preset in ('cifar10', 'cifar100'):
    # The DARTS real-data hyperparameters (spec section 4).
    config.search.warmup_epochs = 0
    config.search.alpha_init = 'normal'
    config.optim.lr_min = 0.001
    config.optim.weight_decay = 3e-4
    config.optim.arch_weight_decay = 1e-3
    config.optim.arch_b2 = 0.999

  if 'sgas' in modifiers:
    config.search.method = 'sgas'
  if 'pc_darts' in modifiers:
    # PC-DARTS's CIFAR search (spec section 8): architecture steps only from epoch 15.
    config.search.method = 'pc_darts'
    config.search.batch_size = 256
    config.optim.lr = 0.1
    config.optim.lr_min = 0.0
    config.optim.arch_lr = 6e-4
    config.search.warmup_epochs = 15
    config.search.epochs = 35

  if 'quick' in modifiers:
    config.data.num_examples = 512
    config.data.image_size = 16
    config.model.channels = 8
    config.model.layers = 3  # normal, reduce, reduce: compile time grows faster than the cells
    config.search.batch_size = 32
    config.search.warmup_epochs = min(config.search.warmup_epochs, 1)
    config.search.epochs = 4 - config.search.warmup_epochs
    config.data.fractal_categories = 10
    config.checkpoint.max_to_keep = 0
    config.log.every_steps = 8
    config.parallel.xla_optimization_level = 'O0'  # a smoke run: compiling is most of it
    if config.search.method == 'sgas':
      # A decision after every search epoch until all 8 edges per cell are decided; one batch
      # size, so the search step compiles once.
      config.search.epochs = 2 * config.model.steps
      config.search.sgas_decision_start = 0
      config.search.sgas_decision_every = 1
      config.search.sgas_batch_increase = 0
  return config
