#!/usr/bin/env bash
# A search on a Cloud TPU VM or pod slice: every host runs the same command; JAX joins them
# (UNREAL_NAS_DISTRIBUTED=1 calls jax.distributed.initialize()) and the batch is split over all
# chips. Use a workdir every host can write (a gs:// bucket works with Orbax).
#   TPU=my-tpu ZONE=us-central2-b WORKDIR=gs://bucket/rlrn launch/tpu_vm.sh [--config.field=value ...]
set -euo pipefail
: "${TPU:?set TPU to the TPU VM name}" "${ZONE:?set ZONE}" "${WORKDIR:?set WORKDIR}"
preset=${PRESET:-rlrn}
repo=${REPO_URL:-}
setup="python3 -m pip install -q -U pip && cd ~/unreal-nas-jax && python3 -m pip install -q -e . 'jax[tpu]'"
[ -n "$repo" ] && setup="(test -d ~/unreal-nas-jax || git clone $repo ~/unreal-nas-jax) && $setup"
gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all --command="$setup"
gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all --command="cd ~/unreal-nas-jax && \
  UNREAL_NAS_DISTRIBUTED=1 unreal-nas search --config=${preset} \
  --workdir=${WORKDIR} --config.log.progress=lines $*"
