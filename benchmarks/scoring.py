"""15.5 s, 711 MB peak RSS: 2000 models x 60k train x 10k test, 2-core Xeon (Sapphire Rapids), numpy 2.4.6.

Benchmark memorization + influence scoring at CIFAR-like scale (threshold
0.15, top-k 5; 25 s of CPU time over the 2 cores; target <= 60 s, <= 2000 MB).

Synthetic inputs: ``masks`` has each model (row) trained on a random 70%
subset; train correctness depends on membership with a per-example
memorization effect; each test example has two "helper" training examples
whose presence raises its accuracy by 0.4 and 0.2, so real influence exists.

Times ``memorization`` + ``influence(threshold, top_k)`` together and reports
the process's peak resident memory (``ru_maxrss``: the whole process, so it
includes the interpreter, numpy/pandas and the inputs themselves, about
``n_models * (n_train + n_test)`` bytes of bool; ``rss_before_mb`` is the
resident size just before scoring starts).

    python benchmarks/scoring.py --json scoring.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from longtail.estimate import influence, memorization  # noqa: E402

_CHUNK = 100  # models generated per chunk, keeping generation well below scoring memory


def _subset_masks(rng: np.random.Generator, n_models: int, n_train: int) -> np.ndarray:
    masks = np.zeros((n_models, n_train), dtype=bool)
    size = int(round(0.7 * n_train))
    for row in masks:
        row[rng.choice(n_train, size=size, replace=False)] = True
    return masks


def _bernoulli(rng: np.random.Generator, prob: np.ndarray) -> np.ndarray:
    return rng.random(prob.shape, dtype=np.float32) < prob


def _train_correct(rng: np.random.Generator, masks: np.ndarray) -> np.ndarray:
    n_train = masks.shape[1]
    p_out = rng.uniform(0.3, 0.9, n_train).astype(np.float32)
    p_in = np.minimum(1.0, p_out + rng.choice([0.0, 0.1, 0.6], n_train, p=[0.7, 0.2, 0.1]))
    correct = np.empty_like(masks)
    for start in range(0, masks.shape[0], _CHUNK):
        seen = masks[start : start + _CHUNK]
        correct[start : start + _CHUNK] = _bernoulli(rng, np.where(seen, p_in, p_out))
    return correct


def _test_correct(rng: np.random.Generator, masks: np.ndarray, n_test: int) -> np.ndarray:
    helper1, helper2 = rng.integers(0, masks.shape[1], (2, n_test))
    base = rng.uniform(0.2, 0.4, n_test).astype(np.float32)
    correct = np.empty((masks.shape[0], n_test), dtype=bool)
    for start in range(0, masks.shape[0], _CHUNK):
        seen = masks[start : start + _CHUNK]
        prob = base + 0.4 * seen[:, helper1] + 0.2 * seen[:, helper2]
        correct[start : start + _CHUNK] = _bernoulli(rng, prob)
    return correct


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description="Time memorization + influence scoring.")
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--train", type=int, default=60_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--threshold", type=float, default=0.15)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--max-block-mb", type=float, default=256.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    masks = _subset_masks(rng, args.models, args.train)
    correct = _train_correct(rng, masks)
    test_correct = _test_correct(rng, masks, args.test)
    rss_before = _rss_mb()

    start, cpu_start = time.perf_counter(), time.process_time()
    mem = memorization(masks, correct)
    mem_seconds = time.perf_counter() - start
    pairs = influence(
        masks,
        test_correct,
        threshold=args.threshold,
        top_k=args.top_k,
        max_block_mb=args.max_block_mb,
    )
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start

    result = {
        "n_models": args.models,
        "n_train": args.train,
        "n_test": args.test,
        "seconds": round(seconds, 4),
        "memorization_seconds": round(mem_seconds, 4),
        "influence_seconds": round(seconds - mem_seconds, 4),
        "cpu_seconds": round(cpu_seconds, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_mb": round(rss_before, 1),
        "n_pairs": len(pairs),
        "n_memorized_over_0.5": int((mem["mem"] > 0.5).sum()),
        "threshold": args.threshold,
        "top_k": args.top_k,
        "max_block_mb": args.max_block_mb,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
