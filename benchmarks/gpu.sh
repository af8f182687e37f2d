#!/usr/bin/env bash
# The GPU checks, as one script for a lent GPU machine that has PyTorch but not the project's
# stack (Kedro, MLflow): only the Kedro-free library runs there. Results go to $OUT (default
# ./gpu-out); docs/benchmarks.md, section "GPU", records the last run.
#
# Before (here):  python benchmarks/replication.py prepare --models 2000 --trained .gpu/mnist5k
# There:          bash benchmarks/gpu.sh .gpu/mnist5k
# After (here):   python benchmarks/replication.py measure --models 500 --trained <folder with trained.npz>
set -u
PREPARED=${1:?the folder benchmarks/replication.py prepare wrote}
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH=src:tests PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
log() { echo "== $* ($(date +%T))"; }

{
  log machine
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'

  for precision in bf16 fp32; do
    log "replication study: 2,000 mnist5k models, $precision"
    mkdir -p "/tmp/$precision" && cp "$PREPARED"/inputs.npz "$PREPARED"/config.json "/tmp/$precision/"
    timeout 200 "$PY" benchmarks/train_arrays.py "/tmp/$precision" --device cuda --precision "$precision" \
      && cp "/tmp/$precision/trained.npz" "$OUT/trained_$precision.npz" && cp "/tmp/$precision/trained.json" "$OUT/trained_$precision.json"
  done

  log "CUDA tests"
  timeout 180 "$PY" -m pytest --noconftest -p no:cacheprovider -q -s -rA tests/nets/test_cuda.py

  log "training throughput"
  for args in "digits-mlp --models 1024 --loop-models 16" "mnist-mlp --models 256 --loop-models 4" \
              "cifar-resnet --models 64 --loop-models 4" "digits-mlp --models 1024 --loop-models 16 --model custom_models:digits_mlp"; do
    # shellcheck disable=SC2086
    timeout 120 "$PY" benchmarks/training.py --preset $args --device cuda --precision auto --json /tmp/bench.json \
      && "$PY" -c 'import json,sys; print(json.dumps(json.load(open("/tmp/bench.json"))))' >> "$OUT/training.jsonl"
  done

  log "precision of the matrix products: 2,000 MNIST MLPs in tf32, bf16 and strict fp32"
  for precision in tf32 bf16 fp32; do
    timeout 170 "$PY" benchmarks/training.py --preset mnist-mlp --models 2000 --device cuda --precision "$precision" \
      --no-fp32-baseline --loop-models 1 --json "$OUT/mnist2000_$precision.json"
  done

  # needs pydantic there (carry its wheels); test_reference needs Kedro (longtail.study), so it stays here
  log "library tests with a GPU present (device auto = cuda)"
  timeout 240 "$PY" -m pytest --noconftest -p no:cacheprovider -q tests/nets tests/test_estimate.py \
    --ignore tests/nets/test_reference.py --deselect tests/nets/test_cuda.py
  log done
} 2>&1 | tee "$OUT/log.txt"
