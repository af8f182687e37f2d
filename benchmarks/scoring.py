"""Benchmark memorization + influence scoring at CIFAR-like scale: 2000 models x 60k train x
10k test, threshold 0.15, top-k 5, same-class pairs of 10 classes (target <= 60 s, <= 2000 MB).
Measured figures, per structure and pairs, with the machine: docs/benchmarks.md (the default
printed 23.8 s wall, 710 MB peak RSS on a shared 2-core AMD EPYC).

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

``--tails N`` instead times the exact p-values alone: ``hypergeom_upper_tail`` against
``scipy.stats.hypergeom.sf`` on the same N tables of random margins of ``--tail-models``
models (500: the figures ``longtail.estimate.evidence`` states; from about 1,250 the far lower
tails, whose pmf underflows, are among them), and counts the tails where they differ by more
than 1e-9, absolute and relative.
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
from longtail.estimate.evidence import hypergeom_upper_tail  # noqa: E402

_CHUNK = 100  # models generated per chunk, keeping generation well below scoring memory
_CLASSES = 10


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


def _labels(rng: np.random.Generator, n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, _CLASSES, n_train), rng.integers(0, _CLASSES, n_test)


def _helpers(rng: np.random.Generator, train_labels: np.ndarray, test_labels: np.ndarray) -> np.ndarray:
    """(2, n_test): two training examples of each test example's class, its planted helpers."""
    by_class = [np.flatnonzero(train_labels == c) for c in range(_CLASSES)]
    helpers = np.empty((2, len(test_labels)), dtype=np.int64)
    for c, members in enumerate(by_class):
        where = np.flatnonzero(test_labels == c)
        helpers[:, where] = members[rng.integers(0, len(members), (2, len(where)))]
    return helpers


def _test_correct(
    rng: np.random.Generator, masks: np.ndarray, helpers: np.ndarray, structure: str
) -> tuple[np.ndarray, np.ndarray]:
    """Test correctness and which test examples are hard (helped by their planted helpers).

    synthetic: every test example is hard, right with probability 0.2-0.4 plus 0.4 when its
    first helper is in the model and 0.2 when its second is. realistic (like MNIST at 98%
    accuracy): 90% of the test examples are right in every model (constant columns), 5% are
    right with probability 0.98 whatever the subset, 5% are hard as above."""
    n_test = helpers.shape[1]
    kind = np.zeros(n_test, dtype=np.int8) if structure == "synthetic" else rng.choice([1, 2, 0], n_test, p=[0.9, 0.05, 0.05])
    base = np.where(kind == 0, rng.uniform(0.2, 0.4, n_test), np.where(kind == 1, 1.0, 0.98)).astype(np.float32)
    hard = kind == 0
    correct = np.empty((masks.shape[0], n_test), dtype=bool)
    for start in range(0, masks.shape[0], _CHUNK):
        seen = masks[start : start + _CHUNK]
        prob = base + hard * (0.4 * seen[:, helpers[0]] + 0.2 * seen[:, helpers[1]])
        correct[start : start + _CHUNK] = _bernoulli(rng, prob)
    return correct, hard


def _planted(pairs, helpers: np.ndarray, hard: np.ndarray, fdr: float = 0.1) -> dict[str, int]:
    """How many planted helper pairs (of the hard test examples) the pairs hold, and how many
    of those have a q-value at most ``fdr``."""
    n_test = len(hard)
    tests = np.flatnonzero(hard)
    planted = np.unique(np.concatenate([helpers[0, tests], helpers[1, tests]]) * n_test + np.tile(tests, 2))
    keys = pairs["train_index"].to_numpy() * n_test + pairs["test_index"].to_numpy()
    found = np.isin(keys, planted)
    return {
        "planted_pairs": int(planted.size),
        "planted_pairs_returned": int(found.sum()),
        f"planted_pairs_q_at_most_{fdr}": int((pairs["q_value"].to_numpy()[found] <= fdr).sum()),
    }


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _tails(rng: np.random.Generator, n: int, models: int = 500) -> dict[str, float]:
    """Seconds for N upper tails P(X ≥ x), ours and scipy's, on tables of random margins."""
    from scipy.stats import hypergeom

    draws, successes = rng.integers(1, models, n), rng.integers(0, models + 1, n)
    low, high = np.maximum(0, draws + successes - models), np.minimum(draws, successes)
    x = low + np.floor(rng.random(n) * (high - low + 1)).astype(np.int64)
    start = time.perf_counter()
    ours = hypergeom_upper_tail(x, draws, successes, np.full(n, models))
    ours_seconds = time.perf_counter() - start
    start = time.perf_counter()
    theirs = hypergeom.sf(x - 1, models, successes, draws)
    scipy_seconds = time.perf_counter() - start
    difference = np.abs(ours - theirs)
    return {
        "tails": n,
        "models": models,
        "tail_seconds": round(ours_seconds, 4),
        "scipy_sf_seconds": round(scipy_seconds, 4),
        "max_abs_difference": float(np.max(difference)),
        "tails_differing_by_over_1e-9": int(np.sum((difference > 1e-9) & (difference > 1e-9 * np.abs(theirs)))),
    }


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
    parser.add_argument("--structure", choices=["synthetic", "realistic"], default="synthetic")
    parser.add_argument("--pairs", choices=["same_class", "all"], default="same_class")
    parser.add_argument("--tails", type=int, default=0, help="time N exact p-values against scipy instead")
    parser.add_argument("--tail-models", type=int, default=500, help="models of the --tails tables")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    if args.tails:
        tails = _tails(rng, args.tails, args.tail_models)
        _write(args.json, {**tails, "numpy": np.__version__, "python": platform.python_version()})
        return
    masks = _subset_masks(rng, args.models, args.train)
    correct = _train_correct(rng, masks)
    train_labels, test_labels = _labels(rng, args.train, args.test)
    helpers = _helpers(rng, train_labels, test_labels)
    test_correct, hard = _test_correct(rng, masks, helpers, args.structure)
    labels = (train_labels, test_labels) if args.pairs == "same_class" else None
    rss_before = _rss_mb()

    start, cpu_start = time.perf_counter(), time.process_time()
    mem = memorization(masks, correct)
    mem_seconds = time.perf_counter() - start
    pairs = influence(
        masks,
        test_correct,
        threshold=args.threshold,
        top_k=args.top_k,
        labels=labels,
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
        "structure": args.structure,
        "pairs": args.pairs,
        "n_pairs": len(pairs),
        "n_tests": pairs.attrs["n_tests"],
        "pairs_with_infl_at_most_0": int((pairs["infl"] <= 0).sum()),
        "most_pairs_of_one_test_example": int(pairs["test_index"].value_counts().max()) if len(pairs) else 0,
        "constant_test_columns": int((test_correct.all(axis=0) | ~test_correct.any(axis=0)).sum()),
        **_planted(pairs, helpers, hard),
        "n_memorized_over_0.5": int((mem["mem"] > 0.5).sum()),
        "threshold": args.threshold,
        "top_k": args.top_k,
        "max_block_mb": args.max_block_mb,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    _write(args.json, result)


def _write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
