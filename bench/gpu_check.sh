#!/usr/bin/env bash
# GPU check, a few minutes on one CUDA machine (run from anywhere in the repo):
#   1. engine train steps at THUMOS14 shape (T=2304 snippets, C=2048 I3D features, batch 2,
#      width 512, the full AMNet) on 1 GPU with AMP off / bf16 / fp16: step time, peak memory
#      (bench/bench_model.py);
#   2. the same model under Ray Train at THUMOS14 shape (synthetic THUMOS-length videos,
#      C=2048, bf16): the plain engine on 1 GPU vs 1 Ray worker and, when the machine has
#      several GPUs, all of them as DDP (nccl) workers: snippets/s, Ray overhead per epoch and
#      peak memory per worker (bench/bench_ray.py).
# Everything printed also goes to $OUT/gpu_check.txt (default outputs/gpu_check).
#
#   bench/gpu_check.sh                 # on the GPU machine
#   bench/gpu_check.sh --cpu-smoke     # tiny shapes on CPU: checks the script itself
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
[ "${1:-}" = "--cpu-smoke" ] && SMOKE=1
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
OUT=${OUT:-outputs/gpu_check}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.txt"
: > "$LOG"
say() { echo "$@" | tee -a "$LOG"; }
# each step runs even if an earlier one failed (one GPU session should yield every figure)
run() {
  say "\$ $*"
  "$@" 2>&1 | grep -v -e "find_unused_parameters=True was specified" | tee -a "$LOG" \
    || say "!! failed (exit ${PIPESTATUS[0]}): $*"
}

say "== amnet GPU check $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ "$SMOKE" = 1 ]; then
  NGPU=0
  say "-- CPU smoke run: tiny shapes, no GPU"
  MODEL_ARGS=(--device cpu --length 256 --channels 64 --width 64 --steps 1 --warmup 0 --infer-runs 1)
  RAY_ARGS=(--n-train 4 --epochs 2 --workers 1 -p params/thumos14.yaml
            -s data.feature_dim=64 -s data.synthetic.feature_dim=64 -s data.max_seq_len=256
            -s data.synthetic.duration_scale=0.2 -s model.embed_dim=64)
  AMPS=(off bf16)
else
  command -v nvidia-smi >/dev/null || { say "nvidia-smi not found: not a GPU machine"; exit 2; }
  run nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv
  NGPU=$(nvidia-smi -L | grep -c '^GPU' || true)
  "$PY" -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { say "torch sees no CUDA device (install the CUDA build of torch==2.13.0)"; exit 2; }
  run "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'bf16', torch.cuda.is_bf16_supported())"
  MODEL_ARGS=(--device cuda --steps 10 --warmup 2 --infer-runs 3)
  # THUMOS14 shape: params/thumos14.yaml (C=2048, T crop 2304, width 512, EMA) on synthetic
  # videos at real THUMOS14 durations (duration_scale=1: ~1,300 snippets on average).
  RAY_ARGS=(--gpu --amp bf16 --n-train 48 --epochs 3 -p params/thumos14.yaml
            -s data.synthetic.feature_dim=2048 -s data.synthetic.duration_scale=1.0
            -s train.batch_size=4)
  WORKERS=(1)
  [ "$NGPU" -ge 2 ] && WORKERS+=("$NGPU")
  RAY_ARGS+=(--workers "${WORKERS[@]}")
  [ "$NGPU" -ge 2 ] && [ $((4 % NGPU)) -ne 0 ] && RAY_ARGS+=(-s "train.batch_size=$((2 * NGPU))")
  AMPS=(off bf16 fp16)
fi

say ""
say "== 1. engine train steps, 1 device, full AMNet"
for amp in "${AMPS[@]}"; do
  run "$PY" bench/bench_model.py "${MODEL_ARGS[@]}" --amp "$amp" --variants full
done

say ""
say "== 2. Ray Train vs the plain engine (GPUs on this machine: $NGPU)"
run "$PY" bench/bench_ray.py "${RAY_ARGS[@]}"

say ""
say "== done: $LOG"
