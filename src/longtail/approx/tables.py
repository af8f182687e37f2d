"""The approximations' long tables, as the ``approximation`` pipeline saves them, and back.

* memorization: ``index, method, score, cost_models, seconds``, one row per training example
  and method;
* influence: ``train_index, test_index, method, score, cost_models, seconds``, each method's
  highest-scored same-class pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from longtail.approx.result import PAIR_COLUMNS, InfluenceEstimate, MemorizationEstimate

MEMORIZATION_COLUMNS = ["index", "method", "score", "cost_models", "seconds"]
INFLUENCE_COLUMNS = ["train_index", "test_index", "method", "score", "cost_models", "seconds"]
_DTYPES = {"index": "int64", "train_index": "int64", "test_index": "int64", "method": "object", "score": "float64",
           "cost_models": "float64", "seconds": "float64"}


def _typed(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame[columns].astype({name: _DTYPES[name] for name in columns}).reset_index(drop=True)


def _unique_methods(estimates: Sequence[MemorizationEstimate | InfluenceEstimate]) -> None:
    names = [e.method for e in estimates]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"methods named more than once: {repeated}")


def memorization_table(estimates: Sequence[MemorizationEstimate]) -> pd.DataFrame:
    """One row per training example and method."""
    _unique_methods(estimates)
    parts = [pd.DataFrame(columns=MEMORIZATION_COLUMNS)]
    for e in estimates:
        score = np.asarray(e.score, np.float64)
        parts.append(pd.DataFrame({"index": np.arange(len(score)), "method": e.method, "score": score,
                                   "cost_models": e.cost_models, "seconds": e.seconds}))
    return _typed(pd.concat(parts, ignore_index=True), MEMORIZATION_COLUMNS)


def influence_table(estimates: Sequence[InfluenceEstimate]) -> pd.DataFrame:
    """Each method's pairs, with its name, cost and seconds on every row."""
    _unique_methods(estimates)
    parts = [pd.DataFrame(columns=INFLUENCE_COLUMNS)]
    for e in estimates:
        missing = [c for c in PAIR_COLUMNS if c not in e.pairs]
        if missing:
            raise ValueError(f"method {e.method!r}'s pairs lack columns {missing}")
        parts.append(e.pairs[list(PAIR_COLUMNS)].assign(method=e.method, cost_models=e.cost_models, seconds=e.seconds))
    return _typed(pd.concat(parts, ignore_index=True), INFLUENCE_COLUMNS)


def memorization_estimates(table: pd.DataFrame, n_train: int) -> list[MemorizationEstimate]:
    """The estimates of a memorization table (every method must score all ``n_train`` examples)."""
    estimates = []
    for method, rows in table.groupby("method", sort=False):
        if sorted(rows["index"]) != list(range(n_train)):
            raise ValueError(f"method {method!r} does not score each of the {n_train} training examples once")
        rows = rows.sort_values("index")
        estimates.append(MemorizationEstimate(method, rows["score"].to_numpy(np.float64), *_cost_of(rows)))
    return estimates


def influence_estimates(table: pd.DataFrame) -> list[InfluenceEstimate]:
    """The estimates of an influence table."""
    return [
        InfluenceEstimate(method, rows[list(PAIR_COLUMNS)].reset_index(drop=True), *_cost_of(rows))
        for method, rows in table.groupby("method", sort=False)
    ]


def _cost_of(rows: pd.DataFrame) -> tuple[float, float]:
    return float(rows["cost_models"].iloc[0]), float(rows["seconds"].iloc[0])
