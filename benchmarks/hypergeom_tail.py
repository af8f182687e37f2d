"""Speed of the exact test's tail: ``longtail.estimate.evidence.hypergeom_upper_tail`` against
``scipy.stats.hypergeom.sf``, on one-sided Fisher tables of a study of ``--models`` models (random margins).

    python benchmarks/hypergeom_tail.py --tables 1000000 --scipy-tables 100000 --models 2000 --json out.json

scipy is timed on fewer tables (its cost is per table) and reported per 10⁶.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
from scipy.stats import hypergeom

from longtail.estimate.evidence import hypergeom_upper_tail


def tables(n: int, models: int = 500, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    draws = np.full(n, round(0.7 * models), dtype=float)  # models that saw the example
    successes = rng.integers(1, models, n).astype(float)  # models that got it right
    right_in = np.floor(np.minimum(successes, draws) * rng.random(n))
    return right_in, draws, successes, np.full(n, float(models))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=1_000_000)
    parser.add_argument("--scipy-tables", type=int, default=100_000)
    parser.add_argument("--models", type=int, default=500, help="the study's size (each table's total)")
    parser.add_argument("--json")
    args = parser.parse_args()
    x, draws, successes, population = tables(args.tables, args.models)
    started = time.perf_counter()
    ours = hypergeom_upper_tail(x, draws, successes, population)
    ours_s = time.perf_counter() - started
    k = args.scipy_tables
    started = time.perf_counter()
    reference = hypergeom.sf(x[:k] - 1, population[:k], successes[:k], draws[:k])
    scipy_s = time.perf_counter() - started
    result = {
        "tables": args.tables,
        "models": args.models,
        "seconds_per_million": ours_s * 1e6 / args.tables,
        "scipy_seconds_per_million": scipy_s * 1e6 / k,
        "max_relative_difference": float(np.max(np.abs(ours[:k] - reference) / np.maximum(reference, 1e-300))),
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
