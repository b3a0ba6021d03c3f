"""unreal_nas_jax: differentiable architecture search on unreal data, in JAX."""

import pathlib

from setuptools import find_packages, setup

README = pathlib.Path(__file__).parent / 'README.md'

setup(
  name='unreal_nas_jax',
  version='0.1.0',
  description='UnrealNAS in JAX/Flax: DARTS search on Gaussian noise, fractals and random labels.',
  long_description=README.read_text(encoding='utf-8') if README.exists() else '',
  long_description_content_type='text/markdown',
  python_requires='>=3.10',
  # The presets in configs/ ship inside the package as unreal_nas_jax/configs, so a regular
  # (non-editable) install finds them without the source tree (config_utils.packaged_config).
  packages=[
    *find_packages(include=['unreal_nas_jax', 'unreal_nas_jax.*']),
    'unreal_nas_jax.configs',
  ],
  package_dir={'unreal_nas_jax.configs': 'configs'},
  # The CPU depthwise kernels are compiled from source on first use (unreal_nas_jax/ops).
  package_data={
    'unreal_nas_jax.ops': ['depthwise_cpu.cc'],
    # Device descriptions of GPUs that `unreal-nas bench --target=gpu:...` compiles for.
    'unreal_nas_jax.target_specs': ['*.txtpb'],
  },
  install_requires=[
    'jax>=0.6.0',
    'flax>=0.10.4',
    'optax>=0.2.4',
    'numpy>=1.26',
    'orbax-checkpoint>=0.11.0',
    'ml-collections>=1.0.0',
    'absl-py>=2.1.0',
    'tqdm>=4.66',
    'matplotlib>=3.8',
    # Kendall's tau and its p-value (analysis/ranking.py).
    'scipy>=1.10',
    # tfds input pipelines (CIFAR/ImageNet); TensorFlow stays on the CPU.
    'tensorflow-datasets>=4.9.7',
    'tensorflow-cpu>=2.18; platform_machine == "x86_64"',
    'tensorflow>=2.18; platform_machine != "x86_64"',
    'importlib_resources>=6.0',
    # Its protocol buffers and record framing write the event files (train/tensorboard.py, no
    # TensorFlow); it shows them (`tensorboard --logdir`).
    'tensorboard>=2.18',
    'pillow>=10.0',
    'dill>=0.3.8',
  ],
  extras_require={
    'test': ['pytest>=8.0', 'pytest-xdist>=3.5', 'chex>=0.1.88', 'ruff>=0.8'],
    # Compile-only toolchains for `unreal-nas bench --target` (no device needed): libtpu pinned
    # by the installed jax's own `tpu` extra; the CUDA PJRT plugin of the same version without
    # the CUDA runtime wheels, and ptxas.
    'tpu-aot': ['jax[tpu]'],
    'gpu-aot': ['jax[cuda12-local]', 'nvidia-cuda-nvcc-cu12'],
  },
  entry_points={'console_scripts': ['unreal-nas=unreal_nas_jax.cli.main:entry_point']},
)
