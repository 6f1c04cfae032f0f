#!/usr/bin/env bash
# What only a GPU can show, in one call (target: under 10 minutes on one GPU):
#   1. the CUDA fast paths against the pure-PyTorch ones (tests marked `gpu`);
#   2. the cost grid on CUDA (config/gpu_check.yaml: batch 256, every model at lengths 200-3200;
#      memory = max_memory_allocated and max_memory_reserved);
#   3. the ML-100K `main` group, every model x 3 seeds at max_len 50, to early stopping.
# Everything it renders lands in reports/measured/gpu_<device>/ to be committed.
#
#   RECBENCH_DATA_MIRROR=/path/with/ml-100k/ml-100k.inter bash benchmarks/gpu_check.sh
#
# Python: $PYTHON (default .venv/bin/python, else python3) must have a CUDA build of torch.
# The `gpu` extra (mamba-ssm, causal-conv1d) is built for the present architecture only.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible'"
ARCH=$("$PYTHON" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
NAME=$("$PYTHON" -c "import torch; print(torch.cuda.get_device_name().split()[-1].lower())")
OUT=reports/measured/gpu_${NAME}
mkdir -p "$OUT"
START=$(date +%s)
stage() { echo "== $1 ($(( $(date +%s) - START )) s)"; }

stage "install (the gpu extra for sm_${ARCH} only)"
"$PYTHON" -m pip install -q -e ".[test]" || true
TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS=16 timeout 300 "$PYTHON" -m pip install -q \
    --no-build-isolation -e ".[gpu]" || echo "gpu extra not installed: kernels tests will skip"

stage "fast paths against pure PyTorch"
timeout 120 "$PYTHON" -m pytest -q -m gpu -rs tests/ 2>&1 | tee "$OUT/fast_vs_pure.txt"

stage "cost grid on CUDA and the ML-100K main group"
timeout 420 "$PYTHON" -m snakemake --cores "$(nproc)" --resources gpu=8 \
    --configfile config/gpu_check.yaml --keep-going 2>&1 | tail -n 30 | tee "$OUT/snakemake_tail.txt"

stage "collect"
cp reports/tables/*.md reports/tables/*.csv "$OUT"/ 2>/dev/null || true
cp reports/figures/*.png "$OUT"/ 2>/dev/null || true
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/device.csv"
stage "done: $OUT"
