#!/usr/bin/env bash
# One search on this machine (CPU, one GPU, or every local GPU: the batch is split over them).
#   launch/local.sh [PRESET] [WORKDIR] [--config.field=value ...]
#   launch/local.sh rlrn,quick runs/rlrn_quick
#   CUDA_VISIBLE_DEVICES=0,1,2,3 launch/local.sh rlrn runs/rlrn_4gpu --config.search.batch_size=256
set -euo pipefail
preset=${1:-rlrn}
workdir=${2:-runs/${preset//,/_}}
shift $(( $# < 2 ? $# : 2 ))
exec unreal-nas search --config="configs/search.py:${preset}" --workdir="${workdir}" "$@"
