#!/usr/bin/env bash
# A search on several GPU nodes under SLURM: one task per node, each seeing all its node's GPUs,
# the global batch split over every GPU. UNREAL_NAS_DISTRIBUTED=1 makes the CLI call
# jax.distributed.initialize(), which reads SLURM's variables (the first node coordinates).
# Before the time limit SLURM sends SIGTERM: every process stops at the same step, saves a
# checkpoint and exits; --requeue starts the job again and the same command resumes.
#   sbatch launch/slurm.sh rlrn /shared/runs/rlrn [--config.field=value ...]
#   sbatch --nodes=4 launch/slurm.sh rlgd,sgas /shared/runs/rlgd_sgas --config.search.batch_size=256
#SBATCH --job-name=unreal-nas
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --signal=TERM@120
#SBATCH --requeue
set -euo pipefail
preset=${1:-rlrn}
workdir=${2:?give a workdir every node can write (a shared filesystem or gs://)}
shift 2
command=${UNREAL_NAS_COMMAND:-search}  # or train, with a configs/train.py preset
srun --kill-on-bad-exit=1 env UNREAL_NAS_DISTRIBUTED=1 \
  unreal-nas "$command" --config="$preset" --workdir="$workdir" --config.log.progress=lines "$@"
