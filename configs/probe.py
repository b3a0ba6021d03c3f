r"""Probe configs: `--config=configs/probe.py:<dataset>[,quick]`.

A probe trains fixed architectures from scratch on a search dataset and records each one's
training loss and accuracy per epoch (UnrealNAS Section 3.1, Fig. 1): the epoch at which the
curve converges scores the dataset's difficulty (`unreal-nas analyze difficulty`), and the
architectures' accuracies at a probe epoch, against another dataset's, its distinguishability
(`unreal-nas analyze rank`).

Datasets: rlrn, rlgd, rlrd, cifar10, cifar100, with the `data` and `model` blocks of the search
presets of the same name (configs/search.py) and the search's weight optimizer (SGD lr 0.025,
momentum 0.9, cosine to optim.lr_min over probe.epochs; the real-data presets' weight decay).
The architectures (probe block):
  probe.num_architectures  K architectures sampled at random from the DARTS space with
                           probe.arch_seed (each node: 2 distinct inputs, ops other than 'none');
                           the same seed gives the same architectures, named random_0..random_K-1.
  probe.architectures      instead, a comma-separated list of published names (DARTS_V2, ...),
                           genotype.json files or search workdirs; each is named by its entry.
  probe.epochs             epochs of training (100: past the paper's slowest convergence, 94).
  probe.batch_size         global batch.
  probe.program            how the K architectures run: 'vmap' (one vectorised step), 'map' (a
                           loop inside one program), 'loop' (the one-architecture step called K
                           times), or 'auto' ('vmap' on accelerators, 'loop' on CPU). Every
                           choice compiles one program for all K.
Every architecture starts from the same weights (config.seed) and sees the same batches, so their
curves differ only by the architecture.
Modifier:
  quick     a CPU-sized probe: the search's quick sizes (512 examples of 16x16, C=8, 3 cells,
            batch 32) for 8 epochs.

Run:
  unreal-nas probe --config=configs/probe.py:rlrn,quick --workdir=/tmp/probe_rlrn
  unreal-nas probe --config=configs/probe.py:rlrn,quick --config.probe.num_architectures=8 \
    --workdir=/tmp/probe_rlrn_8
  unreal-nas analyze difficulty /tmp/probe_rlrn
"""

import importlib.util
import pathlib

import ml_collections

from unreal_nas_jax.config_utils import packaged_config, parse_preset

PRESETS = ('rlrn', 'rlgd', 'rlrd', 'cifar10', 'cifar100')
MODIFIERS = ('quick',)
# Fields of the search config that a probe has no use for (it trains weights only).
_ARCH_OPTIM_FIELDS = ('arch_lr', 'arch_b1', 'arch_b2', 'arch_eps', 'arch_weight_decay')


def _search_config(arg: str) -> ml_collections.ConfigDict:
  """configs/search.py:`arg`, read from beside this file (else the packaged one)."""
  here = pathlib.Path(__file__).with_name('search.py') if '__file__' in globals() else None
  path = here if here is not None and here.exists() else packaged_config('search.py')
  spec = importlib.util.spec_from_file_location('_config_search_of_probe', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset, modifiers = parse_preset(arg, kind='probe', presets=PRESETS, modifiers=MODIFIERS)
  search = _search_config(','.join((preset, *modifiers)))

  config = ml_collections.ConfigDict()
  config.preset = arg or preset
  config.seed = search.seed  # the weights' init and the epoch order, shared by every architecture
  config.data_seed = search.data_seed
  config.data = search.data
  config.model = search.model

  config.probe = ml_collections.ConfigDict()
  config.probe.num_architectures = 1  # K random architectures (when `architectures` is empty)
  config.probe.arch_seed = 0
  config.probe.architectures = ''  # 'DARTS_V2,PC_DARTS_cifar,path/genotype.json,...'
  config.probe.epochs = 100
  config.probe.batch_size = search.search.batch_size
  config.probe.program = 'auto'  # 'auto' | 'vmap' | 'map' | 'loop'

  config.optim = search.optim
  for field in _ARCH_OPTIM_FIELDS:
    del config.optim[field]
  config.checkpoint = search.checkpoint
  config.log = search.log
  config.log.tensorboard = True  # DIR/tensorboard/: loss/<architecture>, accuracy/<architecture>
  config.parallel = search.parallel

  if 'quick' in modifiers:
    config.probe.epochs = 8
  return config
