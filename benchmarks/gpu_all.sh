#!/bin/bash
# Every GPU figure in one go (docs/benchmarks.md section 5, docs/finetuning.md): about 8
# minutes on one H100 or H200, each part cut off in time. JSON and logs go to
# ${OUT:-benchmarks/results}.
#   bash benchmarks/gpu_all.sh                       # PYTHON=.venv/bin/python by default
set -u
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-benchmarks/results}
if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "skipped: no CUDA device"
    exit 0
fi
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.txt"
run() {
    local name=$1 limit=$2
    shift 2
    echo "== $name"
    timeout "$limit" "$PY" -m "benchmarks.$name" "$@" 2>&1 | tee "$OUT/$name.log"
}
# Latency first: whether the padded batch sizes and start-up warm-up remove the 1 s tails
# (docs/benchmarks.md, section 5), and what the warm-up adds to start-up (service_ready_s).
run latency 250 --configs gpu,gpu-batched --rounds 2 --duration 8 --warmup 2 \
    --out "$OUT/latency_gpu.json"
run gpu 170 --images 200 --dtypes fp32,bf16 --out "$OUT/gpu.json"
run finetune_gpu 130 --out "$OUT/finetune_gpu.json"
