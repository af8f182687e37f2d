"""Do a study's reported lists replicate? (issue 11's measure)

A study of N models (default 500, scheme independent or balanced) is compared with an
independent reference: models 500 … 1,999 of the default study grown to 2,000 models
(independent scheme; they never share a model with any study of at most 500 models). A
reported pair replicates when its reference infl ≥ 0.10, a reported memorized example when
its reference mem ≥ 0.15; coverage is the share of the reference's own selection (infl ≥ 0.15
and mem ≥ 0.25 over the 1,500 reference models, same-class pairs) that the report holds.

``schemes`` compares the sampling schemes (issue 11, item 5): for each, the convergence
diagnostic's median mem_se over the reference's memorized examples and the models it
extrapolates to for a median se of 0.05, and the mean squared difference of mem from the
reference's on those examples (an empirical check of the variance).

Trained models are reused through the shard store (``--store``, outside the worktree), so
only the first call trains; ``--reference START STOP`` and ``--dataset`` change the setting:

    python benchmarks/replication.py train --scheme independent --models 2000
    python benchmarks/replication.py train --scheme balanced --models 500
    python benchmarks/replication.py measure --models 500 --scheme independent --json out.json
    python benchmarks/replication.py schemes --dataset digits --models 100 --reference 100 200

Where the project's stack is missing (a lent GPU machine), ``prepare --trained DIR`` writes the
study's inputs, benchmarks/train_arrays.py trains them there, and ``measure --trained DIR``
reads the results back.

Measured (docs/diagnostics.md): mnist5k, ``measure --models 500`` and ``--models 250`` on 2,000
models trained on an H200; earlier, on a 2-core AMD EPYC shared with other jobs,
``measure --models 256 --reference 256 750``; digits, ``schemes --models 100 --reference 100 200``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from longtail.diagnostics import models_for_se
from longtail.estimate import MODES, Selection, influence, influence_of, memorization, with_memorization
from longtail.executors import LocalExecutor, train_with_store
from longtail.nets.config import TrainConfig
from longtail.params import SamplingParams, validate_parameters
from longtail.pipelines.ingestion.nodes import load_and_split, plant_label_noise
from longtail.pipelines.sampling.nodes import draw_subset_masks
from longtail.shards import ShardStore
from longtail.study import experiment_identity, train_config, training_data

CONF = Path(__file__).resolve().parents[1] / "conf" / "base"
REFERENCE = (500, 2000)  # models of the independent study taken as the reference
REFERENCE_PAIR, REFERENCE_MEM = 0.15, 0.25  # the reference's own selection (the paper's cut-offs)
REPLICATES_PAIR, REPLICATES_MEM = 0.10, 0.15  # a reported item replicates at these reference estimates
PER_SHARD = 50


REFERENCE_ARRAYS = ("masks", "train_correct", "test_correct", "train_labels", "test_labels", "reference_models")


def load_reference(path: Path) -> dict[str, np.ndarray]:
    """The reference models of an npz written by benchmarks/export_reference.py."""
    with np.load(path, allow_pickle=False) as stored:
        missing = [name for name in REFERENCE_ARRAYS if name not in stored.files]
        if missing:
            raise SystemExit(f"{path} lacks {missing}: write it with benchmarks/export_reference.py")
        return {name: stored[name] for name in stored.files}


def default_parameters(dataset: str) -> dict:
    merged: dict = {}
    for path in sorted(CONF.glob("parameters_*.yml")):
        merged.update(yaml.safe_load(path.read_text()))
    merged["dataset"]["name"] = dataset
    return merged


def study_inputs(
    dataset: str, scheme: str, n_models: int, precision: str = "fp32"
) -> tuple[dict[str, np.ndarray], TrainConfig, SamplingParams]:
    """The default study's data and first ``n_models`` subset masks under ``scheme``, as the
    pipelines make them, with its trainer configuration (in ``precision``: fp32 unless asked,
    whatever ``auto`` picks on this machine) and sampling parameters."""
    params = default_parameters(dataset)
    study = validate_parameters({
        **params,
        "sampling": {**params["sampling"], "n_models": n_models, "scheme": scheme},
        "training": {**params["training"], "precision": precision},
    })
    train_images, test_images, clean = load_and_split(study.dataset)
    _, train_labels, test_labels = plant_label_noise(clean, study.dataset)
    masks = draw_subset_masks(train_labels, study.sampling)
    config = train_config(study.training)
    sampling = study.sampling
    inputs = {"train_images": train_images, "train_labels": train_labels, "test_images": test_images,
              "test_labels": test_labels, "masks": masks}
    return inputs, config, sampling


def study_arrays(store_root: Path, dataset: str, scheme: str, n_models: int, precision: str = "fp32") -> dict[str, np.ndarray]:
    """Masks, labels and correctness of the default study's first ``n_models`` models under
    ``scheme`` in ``precision``, training (and storing) whatever the store lacks."""
    inputs, config, sampling = study_inputs(dataset, scheme, n_models, precision)
    data = training_data(*(inputs[k] for k in ("train_images", "train_labels", "test_images", "test_labels")))
    store = ShardStore(store_root, experiment_identity(data, config, sampling))
    arrays, trained = train_with_store(store, inputs["masks"], data, config, PER_SHARD, LocalExecutor())
    logging.info("%s %s %s: %d models, %d trained now", dataset, scheme, config.precision, n_models, trained)
    return {"masks": inputs["masks"], "train_labels": inputs["train_labels"], "test_labels": inputs["test_labels"], **arrays}


def prepare(folder: Path, dataset: str, n_models: int) -> None:
    """``inputs.npz`` and ``config.json`` for benchmarks/train_arrays.py (independent scheme)."""
    inputs, config, _ = study_inputs(dataset, "independent", n_models)
    folder.mkdir(parents=True, exist_ok=True)
    n_classes = training_data(inputs["train_images"], inputs["train_labels"], inputs["test_images"], inputs["test_labels"]).n_classes
    np.savez_compressed(folder / "inputs.npz", n_classes=np.array(n_classes), **inputs)
    (folder / "config.json").write_text(json.dumps(asdict(config), indent=2))


def trained_arrays(folder: Path) -> dict[str, np.ndarray]:
    """What ``study_arrays`` returns, for models trained by benchmarks/train_arrays.py."""
    inputs, trained = np.load(folder / "inputs.npz"), np.load(folder / "trained.npz")
    correct = {
        name: np.unpackbits(trained[name], axis=1, count=int(trained[f"shape_{name.split('_')[0]}"][1])).astype(bool)
        for name in ("train_correct", "test_correct")
    }
    return {"masks": inputs["masks"], "train_labels": inputs["train_labels"], "test_labels": inputs["test_labels"], **correct}


def _estimates(arrays: dict[str, np.ndarray], models: slice, threshold: float, top_k: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    masks, labels = arrays["masks"][models], (arrays["train_labels"], arrays["test_labels"])
    scores = memorization(masks, arrays["train_correct"][models])
    pairs = influence(masks, arrays["test_correct"][models], threshold=threshold, top_k=top_k, labels=labels)
    return scores, with_memorization(pairs, scores)


def _keys(pairs: pd.DataFrame, n_test: int) -> np.ndarray:
    return pairs["train_index"].to_numpy() * n_test + pairs["test_index"].to_numpy()


def measure(
    study: dict[str, np.ndarray], reference: dict[str, np.ndarray], n_models: int, scoring: dict, ref_models: slice
) -> dict:
    """Both selections of the study's first ``n_models`` models against the ``ref_models`` of
    ``reference``."""
    n_test = study["test_correct"].shape[1]
    ref_scores, ref_pairs = _estimates(reference, ref_models, REFERENCE_PAIR, None)
    ref_mem = ref_scores["mem"].to_numpy()
    ref_selected = ref_pairs[(ref_pairs["infl"] >= REFERENCE_PAIR) & (ref_pairs["mem"] >= REFERENCE_MEM)]
    ref_memorized = np.flatnonzero(np.nan_to_num(ref_mem, nan=-1) >= REFERENCE_MEM)
    scores, pairs = _estimates(study, slice(0, n_models), scoring["influence_threshold"], scoring["top_k"])
    result: dict = {"reference_pairs": len(ref_selected), "reference_memorized": len(ref_memorized)}
    for mode in MODES:
        rule = Selection(mode, scoring["influence_threshold"], scoring["memorization_threshold"], scoring["fdr"])
        reported = pairs[rule.pairs(pairs)]
        memorized = np.flatnonzero(rule.memorized(scores["mem"], scores["mem_q"]))
        again = influence_of(
            reference["masks"][ref_models], reference["test_correct"][ref_models],
            reported["train_index"], reported["test_index"],
        )["infl"].to_numpy()
        result[mode] = {
            "pairs_reported": len(reported),
            "pairs_replicate": _share(again >= REPLICATES_PAIR),
            "pairs_coverage": _share(np.isin(_keys(ref_selected, n_test), _keys(reported, n_test))),
            "pairs_mean_infl_study": float(reported["infl"].mean()) if len(reported) else math.nan,
            "pairs_mean_infl_reference": float(np.nanmean(again)) if len(reported) else math.nan,
            "memorized_reported": len(memorized),
            "memorized_replicate": _share(ref_mem[memorized] >= REPLICATES_MEM),
            "memorized_coverage": _share(np.isin(ref_memorized, memorized)),
        }
    return result


def compare_schemes(
    schemes: dict[str, dict[str, np.ndarray]], reference: dict[str, np.ndarray], n_models: int, target_se: float
) -> dict:
    """Issue 11's convergence measure for each scheme's first ``n_models`` models: the median
    mem_se over a fixed set of memorized examples (mem ≥ 0.25 by the reference models) and the
    models it extrapolates to for ``target_se``; and, as an empirical check of the variance,
    the mean squared difference of mem on that set from the reference's (the reference's own
    variance is common to the schemes)."""
    ref_mem = memorization(reference["masks"][slice(*REFERENCE)], reference["train_correct"][slice(*REFERENCE)])["mem"].to_numpy()
    fixed = np.nan_to_num(ref_mem, nan=-1) >= REFERENCE_MEM
    result: dict = {"memorized_by_reference": int(fixed.sum())}
    for scheme, arrays in schemes.items():
        scores = memorization(arrays["masks"][:n_models], arrays["train_correct"][:n_models])
        se = float(np.nanmedian(scores["mem_se"].to_numpy()[fixed]))
        result[scheme] = {
            "median_mem_se_memorized": se,
            "models_for_target_se": models_for_se(n_models, se, target_se),
            "mean_squared_difference_from_reference": float(np.nanmean((scores["mem"].to_numpy() - ref_mem)[fixed] ** 2)),
            "n_in_sd": float(arrays["masks"][:n_models].sum(axis=0).std()),
            "subset_size_sd": float(arrays["masks"][:n_models].sum(axis=1).std()),
        }
    return result


def _share(hits: np.ndarray) -> float:
    return float(np.mean(hits)) if len(hits) else math.nan


def main() -> None:
    global REFERENCE  # noqa: PLW0603 (the reference range is an argument of the run)
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["train", "prepare", "measure", "schemes"])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--models", type=int, default=500, help="the study's size (train: how many to have)")
    parser.add_argument("--scheme", choices=["independent", "balanced"], default="independent")
    parser.add_argument(
        "--precision", choices=["fp32", "bf16", "tf32", "auto"], default="fp32",
        help="the study's (train, measure); the reference models are always fp32",
    )
    parser.add_argument("--reference", type=int, nargs=2, default=REFERENCE, help="reference models [start, stop)")
    parser.add_argument("--store", type=Path, default=Path.home() / ".cache" / "longtail" / "replication-shards")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--trained", type=Path, help="prepare: the folder to write; measure: models trained by benchmarks/train_arrays.py")
    parser.add_argument("--reference-npz", type=Path, help="measure: the reference models as benchmarks/export_reference.py wrote them")
    args = parser.parse_args()
    REFERENCE = tuple(args.reference)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.perf_counter()
    if args.command == "train":
        study_arrays(args.store, args.dataset, args.scheme, args.models, args.precision)
        print(json.dumps({"trained": args.models, "scheme": args.scheme, "precision": args.precision,
                          "seconds": time.perf_counter() - started}))
        return
    if args.command == "prepare":
        prepare(args.trained, args.dataset, args.models)
        return
    if args.command == "schemes":
        schemes = {s: study_arrays(args.store, args.dataset, s, args.models) for s in ("independent", "balanced")}
        reference = study_arrays(args.store, args.dataset, "independent", REFERENCE[1])
        target = default_parameters(args.dataset)["diagnostics"]["target_se"]
        result = {"dataset": args.dataset, "models": args.models, "reference": list(REFERENCE),
                  **compare_schemes(schemes, reference, args.models, target)}
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return
    ref_models = slice(*REFERENCE)
    if args.reference_npz:
        reference, ref_models = load_reference(args.reference_npz), slice(None)
        REFERENCE = tuple(int(model) for model in reference["reference_models"])
    if args.models > REFERENCE[0] and args.scheme == "independent":
        raise SystemExit(f"--models {args.models} would share models with the reference {REFERENCE}")
    scoring = default_parameters(args.dataset)["scoring"]
    if args.trained:
        study = reference = trained_arrays(args.trained)
    else:
        study = study_arrays(args.store, args.dataset, args.scheme, args.models, args.precision)
        if not args.reference_npz:
            reference = study_arrays(args.store, args.dataset, "independent", REFERENCE[1])
    if any(not np.array_equal(study[side], reference[side]) for side in ("train_labels", "test_labels")):
        raise SystemExit("the reference's labels differ from this study's: another dataset, split or label noise")
    result = {
        "dataset": args.dataset, "models": args.models, "scheme": args.scheme, "precision": args.precision,
        "reference": list(REFERENCE),
        "scoring": scoring, **measure(study, reference, args.models, scoring, ref_models),
        "seconds": time.perf_counter() - started, "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
