#!/usr/bin/env bash
# The GPU checks, as one script for a lent GPU machine that has PyTorch but not the project's
# stack: the Kedro-free library runs as is; the "smoke" step installs the carried wheelhouse to
# run the whole project. Results go to $OUT (default ./gpu-out); docs/benchmarks.md, section
# "GPU", records the last run.
#
# Before (here):  python benchmarks/replication.py prepare --models 2000 --trained .gpu/mnist5k   # step replication
#                 python benchmarks/wheelhouse.py --python-version <the machine's>                  # step smoke
# There:          bash benchmarks/gpu.sh .gpu/mnist5k
#                 STEPS="airbench smoke" bash benchmarks/gpu.sh    # only some steps (a short device budget)
# After (here):   python benchmarks/replication.py measure --models 500 --trained <folder with trained.npz>
#
# Steps: replication, cuda-tests, throughput, precision, library-tests, airbench, smoke.
set -u
PREPARED=${1:-}
OUT=${OUT:-gpu-out}
STEPS=${STEPS:-replication cuda-tests throughput precision library-tests airbench smoke}
mkdir -p "$OUT"
export PYTHONPATH=src:tests PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
log() { echo "== $* ($(date +%T))"; }
step() { [[ " $STEPS " == *" $1 "* ]]; }

{
  log machine
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c 'import torch, platform; print("torch", torch.__version__, "cuda", torch.version.cuda, "python", platform.python_version())'

  if step replication; then
    for precision in bf16 fp32; do
      log "replication study: 2,000 mnist5k models, $precision"
      mkdir -p "/tmp/$precision" && cp "${PREPARED:?the folder benchmarks/replication.py prepare wrote}"/inputs.npz "$PREPARED"/config.json "/tmp/$precision/"
      timeout 200 "$PY" benchmarks/train_arrays.py "/tmp/$precision" --device cuda --precision "$precision" \
        && cp "/tmp/$precision/trained.npz" "$OUT/trained_$precision.npz" && cp "/tmp/$precision/trained.json" "$OUT/trained_$precision.json"
    done
  fi

  if step cuda-tests; then
    log "CUDA tests"
    timeout 180 "$PY" -m pytest --noconftest -p no:cacheprovider -q -s -rA tests/nets/test_cuda.py
  fi

  if step throughput; then
    log "training throughput"
    for args in "digits-mlp --models 1024 --loop-models 16" "mnist-mlp --models 256 --loop-models 4" \
                "cifar-resnet --models 64 --loop-models 4" "digits-mlp --models 1024 --loop-models 16 --model custom_models:digits_mlp"; do
      # shellcheck disable=SC2086
      timeout 120 "$PY" benchmarks/training.py --preset $args --device cuda --precision auto --json /tmp/bench.json \
        && "$PY" -c 'import json,sys; print(json.dumps(json.load(open("/tmp/bench.json"))))' >> "$OUT/training.jsonl"
    done
  fi

  if step precision; then
    log "precision of the matrix products: 2,000 MNIST MLPs in tf32, bf16 and strict fp32"
    for precision in tf32 bf16 fp32; do
      timeout 170 "$PY" benchmarks/training.py --preset mnist-mlp --models 2000 --device cuda --precision "$precision" \
        --no-fp32-baseline --loop-models 1 --json "$OUT/mnist2000_$precision.json"
    done
  fi

  if step library-tests; then
    # needs pydantic there (carry its wheels); test_reference needs Kedro (longtail.study), so it stays here
    log "library tests with a GPU present (device auto = cuda)"
    timeout 240 "$PY" -m pytest --noconftest -p no:cacheprovider -q tests/nets tests/test_estimate.py \
      --ignore tests/nets/test_reference.py --deselect tests/nets/test_cuda.py
  fi

  if step airbench; then
    log "airbench94 (the CIFAR presets): s/model, one model vs stacks of 2-8, projected hours of cifar10 and cifar100"
    timeout 400 "$PY" benchmarks/airbench_speed.py --device cuda --json "$OUT/airbench_speed.json"
  fi

  if step smoke; then
    log "the whole project on the GPU: kedro run --env smoke --params training.device=cuda"
    if [ ! -f wheelhouse/pure.txt ]; then
      echo "not run: no wheelhouse/ (build it here with benchmarks/wheelhouse.py and carry it)"
    elif missing=$("$PY" -c 'import importlib.metadata as md
for name in (line.split("==")[0] for line in open("wheelhouse/large.txt") if line.strip()):
    try: md.version(name)
    except md.PackageNotFoundError: print(name)') && [ -n "$missing" ]; then
      echo "not run: this machine lacks compiled packages too large to carry:" $missing
    else
      "$PY" -m venv --system-site-packages /tmp/study-env \
        && /tmp/study-env/bin/pip install --quiet --no-index --no-deps --find-links wheelhouse -r wheelhouse/pure.txt -r wheelhouse/small.txt \
        && rm -rf /tmp/study && mkdir -p /tmp/study/data && cp -r conf pyproject.toml .telemetry /tmp/study/ \
        && (cd /tmp/study && PYTHONPATH="$OLDPWD/src" timeout 600 /tmp/study-env/bin/kedro run --env smoke --params training.device=cuda) \
          > "$OUT/smoke_cuda.log" 2>&1
      echo "kedro run exit status $? (log: $OUT/smoke_cuda.log)"; tail -5 "$OUT/smoke_cuda.log"
      "$PY" - "$OUT" <<'EOF'
import json, sqlite3, sys
store = sqlite3.connect("/tmp/study/mlflow.db")
runs, finished = store.execute("select count(*), sum(status = 'FINISHED') from runs").fetchone()
devices = [value for (value,) in store.execute("select distinct value from params where key like '%device%'")]
summary = {"mlflow_runs": runs, "finished": finished, "device_params": devices}
print(summary)
json.dump(summary, open(f"{sys.argv[1]}/smoke_cuda.json", "w"))
EOF
    fi
  fi
  log done
} 2>&1 | tee "$OUT/log.txt"
