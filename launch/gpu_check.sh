#!/usr/bin/env bash
# The accelerator check: at most about 8 minutes on one GPU, JSON lines as it goes.
#
#   launch/gpu_check.sh [OUT_FILE]          (default: gpu_check.jsonl, or $OUT/gpu_check.jsonl)
#
# In order, each part under its own time limit, every record tagged with the device:
#   0. the deviceless compile of the same programs for this GPU's description (`unreal-nas bench
#      --target=gpu:h100|h200`: compile seconds, device memory, bytes and the roofline bound), so
#      the real run below can be compared with what was predicted without a GPU;
#   1. the device, JAX's version, and how long a trivial jit and a small conv net take to compile
#      and run (on some GPU/toolchain pairs every first XLA compile is slow; this tells that
#      apart from the size of our programs);
#   2. the quick search end to end (`rlrn,quick`, no compile cache): wall time and phase lines;
#   3. `unreal-nas bench` of the paper-size search step, first and second order (hlo_ops,
#      lower_s, compile_s, first_step_s, images/s);
#   4. the CIFAR-10 training step (DARTS_V2, C=36, 20 cells, batch 96) in float32 and bfloat16;
#   5. the PyTorch DARTS reference's first-order step on the same device, when torch is there.
# Run from the repository root with the package importable (`pip install -e .`, or PYTHONPATH=.).
# Wheels in .whl/ (e.g. ml-collections for an image without it) are installed first.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:+$OUT/}gpu_check.jsonl}
: > "$out"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/unreal_nas_site .whl/*.whl && export PYTHONPATH="/tmp/unreal_nas_site:${PYTHONPATH:-}"
fi
export PYTHONPATH=".:${PYTHONPATH:-}"
cli="python3 -m unreal_nas_jax.cli.main"

record() {  # record PART JSON_OBJECT: one line, tagged with the part and the device
  python3 - "$1" "$2" "$device" >> "$out" <<'EOF'
import json, sys
part, body, device = sys.argv[1:4]
try:
  obj = json.loads(body)
except json.JSONDecodeError:
  obj = {'output': body[-2000:]}
print(json.dumps({'part': part, 'device': device, **obj}))
EOF
  tail -n 1 "$out"
}

run_part() {  # run_part NAME SECONDS COMMAND...: the command's JSON lines become records
  local name=$1 limit=$2
  shift 2
  local start end status log
  start=$(date +%s.%N)
  log=$(timeout "$limit" "$@" 2> "/tmp/gpu_check_${name}.err")
  status=$?
  end=$(date +%s.%N)
  local any=0
  while IFS= read -r line; do
    if [[ $line == \{* ]]; then record "$name" "$line"; any=1; fi
  done <<< "$log"
  local wall
  wall=$(python3 -c "print(round($end - $start, 1))")
  local tail_err
  tail_err=$(tail -c 1500 "/tmp/gpu_check_${name}.err" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')
  record "$name" "{\"wall_s\": $wall, \"exit\": $status, \"timed_out\": $([[ $status == 124 ]] && echo true || echo false), \"stderr_tail\": $tail_err, \"records\": $any}"
}

device=$(timeout 120 python3 -c 'import jax; d = jax.devices()[0]; print(f"{d.device_kind} x{jax.device_count()} ({d.platform})")' 2> /dev/null || echo unknown)

# 0. The same programs compiled without the device, for this GPU's description.
case "$device" in
  *H200*) target=gpu:h200 ;;
  *H100*) target=gpu:h100 ;;
  *) target= ;;
esac
if [[ -n $target ]]; then
  run_part deviceless_compile 150 $cli bench --target=$target --cases=paper,train_cifar --orders=1
fi

# 1. The device and the cost of a first compile.
run_part first_compile 60 python3 - <<'EOF'
import json, time
t0 = time.perf_counter()
import jax, jax.numpy as jnp
import_s = time.perf_counter() - t0

def timed(fn, *args):
  t0 = time.perf_counter(); compiled = jax.jit(fn).lower(*args).compile(); compile_s = time.perf_counter() - t0
  t0 = time.perf_counter(); jax.block_until_ready(compiled(*args)); run_s = time.perf_counter() - t0
  return round(compile_s, 3), round(run_s, 4)

ones = timed(lambda: jnp.ones((256, 256)) * 2.0)

def conv_net(x, ws):
  for w in ws:
    x = jax.nn.relu(jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
  return jnp.mean(x)

x = jnp.ones((64, 32, 32, 16))
ws = [jnp.full((3, 3, 16, 16), 0.01) for _ in range(4)]
conv = timed(jax.grad(conv_net, argnums=1), x, ws)
print(json.dumps({'jax': jax.__version__, 'import_s': round(import_s, 2),
                  'trivial_jit_compile_s': ones[0], 'trivial_jit_run_s': ones[1],
                  'conv_net_grad_compile_s': conv[0], 'conv_net_grad_run_s': conv[1]}))
EOF

# 2. The quick search, end to end, without a compile cache.
rm -rf /tmp/gpu_check_quick
run_part quick_search 100 bash -c "$cli search --config=configs/search.py:rlrn,quick --workdir=/tmp/gpu_check_quick --compile_cache= --config.log.progress=lines >&2 && python3 -c 'import json; r = [json.loads(l) for l in open(\"/tmp/gpu_check_quick/metrics.jsonl\")]; print(json.dumps({\"epochs\": len(r), \"last_epoch_images_per_s\": r[-1][\"images_per_s\"], \"genotype\": r[-1][\"genotype\"]}))'"

# 3. The paper-size search step, first and second order.
run_part paper_first_order 80 $cli bench --cases=paper --orders=1 --steps=10
run_part paper_second_order 100 $cli bench --cases=paper --orders=2 --steps=5

# 4. The CIFAR-10 evaluation network's training step, float32 and bfloat16.
for dtype in float32 bfloat16; do
  run_part "train_cifar_${dtype}" 50 $cli bench --config=configs/train.py:cifar10,fake_data \
    --config.genotype=DARTS_V2 --config.model.compute_dtype=$dtype --steps=10
done

# 5. The PyTorch reference on the same device.
run_part torch_reference 50 python3 -c 'import json; from unreal_nas_jax import torch_reference as t; print(json.dumps(t.time_first_order_step(steps=5)))'
echo "records in $out"
