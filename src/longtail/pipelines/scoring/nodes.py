"""Scoring: memorization of every training example and influence of training on test examples."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from longtail.estimate import Selection, influence, memorization, with_memorization
from longtail.params import ScoringParams

logger = logging.getLogger(__name__)

_SOFT_COLUMNS = {
    "mem": "mem_soft", "mem_se": "mem_soft_se", "mem_lo": "mem_soft_lo", "mem_hi": "mem_soft_hi",
    "p_in": "p_in_soft", "p_out": "p_out_soft",
}


def score_memorization(
    subset_masks: np.ndarray, train_correct: np.ndarray, train_true_prob: np.ndarray, examples: pd.DataFrame
) -> pd.DataFrame:
    """One row per training example: ``index``, ``label``, ``noisy``, the memorization
    estimate from correctness with its evidence (``mem``, ``mem_se``, ``mem_lo``, ``mem_hi``,
    ``mem_p``, ``mem_q``, ``p_in``, ``p_out``, ``n_in``, ``n_out``) and the same from
    true-label probabilities without a test (``mem_soft``, ``mem_soft_se``, ``mem_soft_lo``,
    ``mem_soft_hi``, ``p_in_soft``, ``p_out_soft``); see ``longtail.estimate``."""
    train = _split(examples, "train")
    hard = memorization(subset_masks, train_correct)
    soft = memorization(subset_masks, train_true_prob)[list(_SOFT_COLUMNS)].rename(columns=_SOFT_COLUMNS)
    scores = pd.concat([train[["index", "label", "noisy"]].reset_index(drop=True), hard, soft], axis=1)
    logger.info(
        "memorization: mean %.4f, %d examples with mem >= 0.5, %d with q <= 0.1, %d undefined",
        scores["mem"].mean(), int((scores["mem"] >= 0.5).sum()), int((scores["mem_q"] <= 0.1).sum()),
        int(scores["mem"].isna().sum()),
    )
    return scores


def _split(examples: pd.DataFrame, split: str) -> pd.DataFrame:
    return examples[examples["split"] == split].sort_values("index")


def score_influence(
    subset_masks: np.ndarray,
    test_correct: np.ndarray,
    memorization_scores: pd.DataFrame,
    examples: pd.DataFrame,
    scoring: ScoringParams,
) -> pd.DataFrame:
    """Pairs (train_index, test_index), of one class with ``scoring.pairs`` same_class, with
    infl ≥ ``scoring.influence_threshold`` plus the ``scoring.top_k`` most influential
    training examples of each test example, with their evidence (``infl_se``, ``infl_lo``,
    ``infl_hi``, ``p_value``, ``q_value``) and the training example's ``mem`` and ``mem_q``."""
    labels = same_class_labels(examples) if scoring.pairs == "same_class" else None
    pairs = influence(
        subset_masks,
        test_correct,
        threshold=scoring.influence_threshold,
        top_k=scoring.top_k,
        labels=labels,
        max_block_mb=scoring.max_block_mb,
    )
    with_memorization(pairs, memorization_scores)
    logger.info(
        "influence (%s pairs, %d tests): %d pairs kept, %d at or above %.2f",
        scoring.pairs, pairs.attrs["n_tests"], len(pairs),
        int((pairs["infl"] >= scoring.influence_threshold).sum()), scoring.influence_threshold,
    )
    return pairs


def split_labels(examples: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(train labels, test labels), each in the order of its split's ``index``."""
    train, test = (_split(examples, split)["label"].to_numpy() for split in ("train", "test"))
    return train, test


def same_class_labels(examples: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(train labels, test labels); every label must be known (published runs without labels
    carry −1) for pairs to be matched by class."""
    labels = split_labels(examples)
    unknown = [int((side < 0).sum()) for side in labels]
    if any(unknown):
        raise ValueError(
            f"scoring.pairs='same_class' needs every example's label, but {unknown[0]} training and {unknown[1]} "
            "test examples have none (-1: published runs without trainset_labels/testset_labels); "
            "add the labels or set scoring.pairs=all"
        )
    return labels


def report_pairs(influence_pairs: pd.DataFrame, scoring: ScoringParams) -> pd.DataFrame:
    """The pairs the chosen selection (``scoring.selection``) reports, carrying the selection
    they were made with (``carried_selection``): as constant columns and in ``attrs["selection"]``
    (kept by parquet, and present even when no pair is reported)."""
    rule = Selection.of(scoring)
    reported = influence_pairs[rule.pairs(influence_pairs)].reset_index(drop=True)
    carried = carried_selection(scoring)
    reported = reported.assign(**carried)
    reported.attrs = {"selection": carried}
    logger.info("%s selection reports %d of %d pairs", scoring.selection, len(reported), len(influence_pairs))
    return reported


def carried_selection(scoring: ScoringParams) -> dict[str, Any]:
    """What a reported table carries of the rule that selected it: the selection's mode and
    cut-offs and ``scoring.pairs``."""
    return {**Selection.of(scoring).parameters(), "pairs": scoring.pairs}


def summarize_scores(
    memorization_scores: pd.DataFrame, influence_pairs: pd.DataFrame, reported_pairs: pd.DataFrame, scoring: ScoringParams
) -> dict[str, Any]:
    """Headline figures for the parent MLflow run: among them ``examples_memorized`` and
    ``pairs_reported`` by the chosen selection."""
    mem = memorization_scores["mem"]
    rule = Selection.of(scoring)
    figures = {
        "mem_mean": float(mem.mean()),
        "mem_median_se": float(memorization_scores["mem_se"].median()),
        "fraction_mem_above_threshold": float((mem >= scoring.memorization_threshold).mean()),
        "examples_memorized": int(rule.memorized(mem, memorization_scores["mem_q"]).sum()),
        "high_influence_pairs": int((influence_pairs["infl"] >= scoring.influence_threshold).sum()),
        "pairs_reported": len(reported_pairs),
        "influence_tests": int(influence_pairs.attrs.get("n_tests", 0)),
    }
    return {name: {"value": value, "step": 0} for name, value in figures.items()}


def published_pairs(reported_pairs: pd.DataFrame) -> dict[str, np.ndarray]:
    """The reported pairs (``scoring.selection``) in the layout of the paper's released files:
    ``tr_idx``, ``tt_idx``, ``infl``, ``mem``."""
    return {
        "tr_idx": reported_pairs["train_index"].to_numpy(np.int64),
        "tt_idx": reported_pairs["test_index"].to_numpy(np.int64),
        "infl": reported_pairs["infl"].to_numpy(np.float64),
        "mem": reported_pairs["mem"].to_numpy(np.float64),
    }


def import_published_runs(published_runs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """Third-party model runs in the layout of the paper's demo (``trainset_mask``,
    ``trainset_correctness``, ``testset_correctness``; optional ``trainset_labels`` and
    ``testset_labels``) as the inputs of scoring: masks, train correctness, train "true-label
    probability" (the correctness itself: published runs carry no probabilities, so
    ``mem_soft`` equals ``mem``), test correctness and an ``examples`` table."""
    required = ("trainset_mask", "trainset_correctness", "testset_correctness")
    missing = [key for key in required if key not in published_runs]
    if missing:
        raise ValueError(f"published_runs lacks arrays {missing}; it has {sorted(published_runs)}, expected {list(required)}")
    masks = np.asarray(published_runs["trainset_mask"]).astype(bool)
    train_correct = np.asarray(published_runs["trainset_correctness"])
    test_correct = np.asarray(published_runs["testset_correctness"])
    if train_correct.shape != masks.shape or test_correct.shape[0] != masks.shape[0]:
        raise ValueError(
            f"published_runs shapes do not fit: trainset_mask {masks.shape}, trainset_correctness "
            f"{train_correct.shape} (expected {masks.shape}), testset_correctness {test_correct.shape} "
            f"(expected ({masks.shape[0]}, n_test))"
        )
    examples = pd.concat(
        [
            _published_split("train", published_runs.get("trainset_labels"), masks.shape[1]),
            _published_split("test", published_runs.get("testset_labels"), test_correct.shape[1]),
        ],
        ignore_index=True,
    )
    return masks, train_correct.astype(bool), train_correct.astype(np.float32), test_correct.astype(bool), examples


def _published_split(split: str, labels: np.ndarray | None, size: int) -> pd.DataFrame:
    labels = np.full(size, -1, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    return pd.DataFrame(
        {
            "split": split,
            "index": np.arange(size, dtype=np.int64),
            "source_index": np.arange(size, dtype=np.int64),
            "original_label": labels,
            "label": labels,
            "noisy": np.zeros(size, dtype=bool),
        }
    )
