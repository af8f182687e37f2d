"""Which approximation to trust at which budget.

Every method of ``longtail.approx.methods`` (``--methods``, default all; ``trak`` and
``influence_function`` need the ``peers`` extra) is measured against a reference: the exact
estimate from models 500 … 1,999 of the default mnist5k study of 2,000 models, 1,500 models
that no approximation uses. R_mem is the training examples with reference mem ≥ 0.25, R_pairs
the same-class pairs with reference infl ≥ 0.15 whose training example is in R_mem; a method
is scored by precision at |R_mem|, ROC AUC and (if it estimates mem) MAE, and by the recall
of R_pairs among its |R_pairs| and 10·|R_pairs| highest pairs (``longtail.approx.measure``).
Cost is counted in subset-model trainings (one subset model timed here, trained alone, converts
extra passes); seconds are measured, for the subset-model methods as n times that model's
seconds plus their own computation.

The reference comes as an npz written by benchmarks/export_reference.py from the store that
holds it (trained by ``benchmarks/replication.py train --models 2000``). The study side, the
first max(--counts) subset models with their margins (kept in ``--store``) and ``--runs``
full-data runs, is trained here with this checkout's code:

    python benchmarks/approximations.py --reference-npz ~/reference-500-2000.npz \\
        --json approximations.json --markdown approximations.md

Measured: docs/approximations.md (2-core AMD EPYC, quiet, 909 s with every method).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from longtail.approx.measure import Reference, agreement
from longtail.approx.methods import (
    METHODS,
    SUBSET_FAMILIES,
    FullRunPlan,
    SubsetModels,
    estimates_mem,
    full_run_estimates,
    subset_model_estimates,
    subset_model_seconds,
)
from longtail.executors import LocalExecutor, TrainingData, train_with_store
from longtail.nets.config import TrainConfig
from longtail.params import SamplingParams
from longtail.shards import ShardStore
from longtail.study import experiment_identity, training_data
from replication import PER_SHARD, REFERENCE_MEM, REFERENCE_PAIR, load_reference, study_inputs

COUNTS = (10, 25, 50, 100, 250)
PER_TEST = 20
MAX_BLOCK_MB = 256.0
#: Issue 18's goal: (target, budget in subset models, {metric: at least}).
GOALS = (
    ("memorization", 25, {"precision_at_r_mem": 0.95, "roc_auc": 0.99}),
    ("influence", 50, {"pair_recall_at_r_pairs": 0.5}),
)
TABLE_COLUMNS = (
    ("cost_models", "cost (models)", "{:.3g}"),
    ("seconds", "seconds", "{:.0f}"),
    ("precision_at_r_mem", "precision at \\|R_mem\\|", "{:.2f}"),
    ("roc_auc", "ROC AUC", "{:.3f}"),
    ("mae", "MAE", "{:.3f}"),
    ("pair_recall_at_r_pairs", "pair recall at \\|R_pairs\\|", "{:.2f}"),
    ("pair_recall_at_10_r_pairs", "at 10·\\|R_pairs\\|", "{:.2f}"),
)
def study_setting(dataset: str, n_models: int) -> tuple[dict[str, np.ndarray], TrainingData, TrainConfig, SamplingParams]:
    """The default study's inputs (its first ``n_models`` masks), splits, trainer and sampling."""
    inputs, config, sampling = study_inputs(dataset, "independent", n_models)
    data = training_data(inputs["train_images"], inputs["train_labels"], inputs["test_images"], inputs["test_labels"])
    return inputs, data, config, sampling


def study_models(
    store_root: Path, inputs: dict[str, np.ndarray], data: TrainingData, config: TrainConfig, sampling: SamplingParams
) -> SubsetModels:
    """The study's subset models of ``inputs["masks"]`` with their margins, trained into
    ``store_root`` where missing."""
    store = ShardStore(store_root, experiment_identity(data, config, sampling))
    arrays, trained = train_with_store(store, inputs["masks"], data, config, PER_SHARD, LocalExecutor())
    logging.info("%d subset models, %d trained now", len(inputs["masks"]), trained)
    return SubsetModels(
        inputs["masks"], arrays["train_correct"], arrays["test_correct"], arrays["train_margin"], arrays["test_margin"],
        (inputs["train_labels"], inputs["test_labels"]),
    )


def check_independent(reference: dict[str, np.ndarray], counts: list[int]) -> None:
    """The study side must share no model with the reference (checked before training)."""
    start = int(reference["reference_models"][0])
    if max(counts) > start:
        raise SystemExit(f"--counts up to {max(counts)} would share models with the reference (models {start} on)")


def check_same_data(models: SubsetModels, reference: dict[str, np.ndarray]) -> None:
    for side, ours in zip(("train_labels", "test_labels"), models.labels):
        if not np.array_equal(reference[side], ours):
            raise SystemExit(f"the reference's {side} differ from this study's: another dataset, split or label noise")


def goals(table: pd.DataFrame) -> dict:
    """For each goal, the best method within its budget and how far it is from the goal."""
    result = {}
    for target, budget, wanted in GOALS:
        metric = next(iter(wanted))
        within = table[(table["target"] == target) & (table["cost_models"] <= budget)].dropna(subset=[metric])
        best = within.sort_values([metric, "cost_models"], ascending=[False, True]).head(1)
        row = best.iloc[0] if len(best) else None
        result[target] = {
            "budget_models": budget,
            "wanted": wanted,
            "best_method": None if row is None else row["method"],
            **({} if row is None else {m: float(row[m]) for m in wanted}),
            "short_by": {m: (math.nan if row is None else max(0.0, v - float(row[m]))) for m, v in wanted.items()},
            "met": row is not None and all(float(row[m]) >= v for m, v in wanted.items()),
        }
    return result


def markdown(table: pd.DataFrame) -> str:
    """One line per method (its memorization and influence rows side by side), cheapest first."""
    metrics = {column: "first" for column, _, _ in TABLE_COLUMNS[2:]}  # each from its own target's row
    merged = table.groupby("method", sort=False).agg({"cost_models": "max", "seconds": "max", **metrics})
    merged = merged.sort_values("cost_models", kind="stable")
    header = "| method | " + " | ".join(label for _, label, _ in TABLE_COLUMNS) + " |"
    lines = [header, "|---" * (len(TABLE_COLUMNS) + 1) + "|"]
    for method, row in merged.iterrows():
        cells = ["–" if pd.isna(row[c]) else f.format(row[c]) for c, _, f in TABLE_COLUMNS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def measure(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    reference_arrays = load_reference(args.reference_npz)
    check_independent(reference_arrays, args.counts)
    inputs, data, config, sampling = study_setting(args.dataset, max(args.counts))
    models = study_models(args.store, inputs, data, config, sampling)
    check_same_data(models, reference_arrays)
    unit = subset_model_seconds(data, inputs["masks"][0], config)
    reference = Reference.from_models(
        reference_arrays["masks"], reference_arrays["train_correct"], reference_arrays["test_correct"], models.labels,
        REFERENCE_MEM, REFERENCE_PAIR, MAX_BLOCK_MB,
    )
    families = [m for m in args.methods if m in SUBSET_FAMILIES]
    mem, infl = subset_model_estimates(
        models, families, args.counts, per_test=args.per_test, subset_model_seconds=unit, max_block_mb=MAX_BLOCK_MB
    )
    plan = FullRunPlan(args.runs, seed=0, checkpoint_epochs=args.checkpoint_epochs)
    run_mem, run_infl = full_run_estimates(
        data, config, [m for m in args.methods if m not in SUBSET_FAMILIES], plan, per_test=args.per_test,
        subset_model_seconds=unit, subset_ratio=sampling.subset_ratio,
    )
    mem, infl = mem + run_mem, infl + run_infl
    table = agreement(reference, mem, infl, {e.method for e in mem if estimates_mem(e.method)})
    return {
        "dataset": args.dataset,
        "reference_models": reference_arrays["reference_models"].tolist(),
        "r_mem": int(reference.memorized.sum()),
        "r_pairs": len(reference.pairs),
        "counts": args.counts,
        "runs": args.runs,
        "checkpoint_epochs": args.checkpoint_epochs,
        "per_test": args.per_test,
        "subset_model_seconds": unit,
        "rows": json.loads(table.to_json(orient="records")),
        "goals": goals(table),
        "markdown": markdown(table),
        "machine": platform.processor() or platform.machine(),
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-npz", type=Path, required=True, help="written by benchmarks/export_reference.py")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--counts", type=int, nargs="+", default=list(COUNTS), help="n of the subset-model families")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD",
                        help=f"subset-model families and full-run methods (default all: {' '.join(METHODS)})")
    parser.add_argument("--runs", type=int, default=4, help="full-data runs that the full-run methods share (at most 8)")
    parser.add_argument("--checkpoint-epochs", type=int, nargs="+", help="epochs whose weights the runs keep (default: every epoch)")
    parser.add_argument("--per-test", type=int, default=PER_TEST, help="pairs listed per test example and method")
    parser.add_argument("--store", type=Path, default=Path.home() / ".cache" / "longtail" / "approximation-shards")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--markdown", type=Path, help="the table alone, for docs/approximations.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result = measure(args)
    args.json.write_text(json.dumps(result, indent=2))
    if args.markdown:
        args.markdown.write_text(result["markdown"])
    print(result["markdown"])
    print(json.dumps(result["goals"], indent=2))


if __name__ == "__main__":
    main()
