#!/usr/bin/env bash
# GPU check, a few minutes on one CUDA machine (run from anywhere in the repo):
#   1. engine train steps at THUMOS14 shape (T=2304 snippets, C=2048 I3D features, batch 4,
#      width 512, the full AMNet) on 1 GPU, bf16 (and AMP off for reference): step time, peak
#      memory, inference per video (bench/bench_model.py);
#   2. the same model under Ray Train at THUMOS14 shape (synthetic THUMOS-length videos,
#      C=2048, bf16): the plain engine on 1 GPU vs 1 Ray worker and, when the machine has
#      several GPUs, all of them as DDP (nccl) workers: snippets/s, Ray overhead per epoch and
#      peak memory per worker (bench/bench_ray.py).
#   3. inference per video at T=2304 and 9216, whole video vs windows (bench_model.py
#      --infer-scaling): the 9216/2304 time ratio (4 = linear, 16 = quadratic);
#   4. Soft-NMS: the batched CUDA kernel vs the compiled CPU kernel (bench/bench_nms.py).
# It ends with one summary table. Everything printed also goes to $OUT/gpu_check.txt
# (default outputs/gpu_check). Without CUDA it stops at once with exit 2 and a one-line reason.
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
  SCALE_ARGS=(--device cpu --channels 64 --width 64 --warmup 0 --infer-runs 1 --lengths 256 1024
              --window 256 --window-overlap 64)
  NMS_ARGS=(--videos 8 --repeat 1)
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
  MODEL_ARGS=(--device cuda --batch 4 --steps 10 --warmup 2 --infer-runs 3)
  SCALE_ARGS=(--device cuda --amp bf16 --warmup 1 --infer-runs 3)
  NMS_ARGS=(--repeat 5)
  # THUMOS14 shape: params/thumos14.yaml (C=2048, T crop 2304, width 512, EMA) on synthetic
  # videos at real THUMOS14 durations (duration_scale=1: ~1,300 snippets on average).
  RAY_ARGS=(--gpu --amp bf16 --n-train 48 --epochs 3 -p params/thumos14.yaml
            -s data.synthetic.feature_dim=2048 -s data.synthetic.duration_scale=1.0
            -s train.batch_size=4)
  WORKERS=(1)
  [ "$NGPU" -ge 2 ] && WORKERS+=("$NGPU")
  RAY_ARGS+=(--workers "${WORKERS[@]}")
  [ "$NGPU" -ge 2 ] && [ $((4 % NGPU)) -ne 0 ] && RAY_ARGS+=(-s "train.batch_size=$((2 * NGPU))")
  AMPS=(bf16 off)
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
say "== 3. inference per video vs video length, whole video vs windows"
run "$PY" bench/bench_model.py --infer-scaling "${SCALE_ARGS[@]}"

say ""
say "== 4. Soft-NMS, CUDA batched vs CPU compiled"
run "$PY" bench/bench_nms.py "${NMS_ARGS[@]}"

say ""
say "== summary (from $LOG)"
"$PY" - "$LOG" <<'PYEOF' | tee -a "$LOG"
import re, sys
text = open(sys.argv[1]).read()
rows = []
for amp, block in re.findall(r"amp=(\w+).*?\n(?:.*\n)*?(full .*)", text):
    f = block.split()
    rows.append((f"train step, full AMNet, amp={amp} (s) / peak mem (GiB) / infer T=2304 (s)",
                 f"{f[2]} / {f[3]} / {f[4]}"))
for line in text.splitlines():
    s = line.strip()
    if re.match(r"(whole video|windows)\s+\S+ time ratio", s) or "faster than the whole" in s:
        rows.append(("inference scaling", s))
    elif re.match(r"(whole video|windows)\s+T=", s):
        rows.append(("inference per video", s))
    elif s.startswith(("amnet (numba)", "numpy reference", "cuda batched", "nms_1d_cpu (C")):
        rows.append(("Soft-NMS", s))
    elif s.startswith(("plain, ", "ray, ", "ray.init", "ddp")):
        rows.append(("Ray Train vs plain engine", s))
    elif s.startswith("!! failed"):
        rows.append(("FAILED", s))
w = max((len(k) for k, _ in rows), default=10)
print(f"{'what':<{w}}  result")
print("-" * w + "  " + "-" * 40)
for k, v in rows:
    print(f"{k:<{w}}  {v}")
PYEOF

say ""
say "== done: $LOG"
