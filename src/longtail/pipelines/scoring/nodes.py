"""Scoring: memorization of every training example and influence of training on test examples."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from longtail.estimate import influence, memorization
from longtail.params import ScoringParams, parse

logger = logging.getLogger(__name__)

_SOFT_COLUMNS = {"mem": "mem_soft", "mem_se": "mem_soft_se", "p_in": "p_in_soft", "p_out": "p_out_soft"}


def score_memorization(
    subset_masks: np.ndarray, train_correct: np.ndarray, train_true_prob: np.ndarray, examples: pd.DataFrame
) -> pd.DataFrame:
    """One row per training example: ``index``, ``label``, ``noisy``, the memorization
    estimate from correctness (``mem``, ``mem_se``, ``p_in``, ``p_out``, ``n_in``, ``n_out``)
    and the same from true-label probabilities (``mem_soft``, ``mem_soft_se``, ``p_in_soft``, ``p_out_soft``)."""
    train = examples[examples["split"] == "train"].sort_values("index")
    hard = memorization(subset_masks, train_correct)
    soft = memorization(subset_masks, train_true_prob)[list(_SOFT_COLUMNS)].rename(columns=_SOFT_COLUMNS)
    scores = pd.concat(
        [train[["index", "label", "noisy"]].reset_index(drop=True), hard, soft], axis=1
    )
    logger.info(
        "memorization: mean %.4f, %d examples with mem >= 0.5, %d undefined",
        scores["mem"].mean(), int((scores["mem"] >= 0.5).sum()), int(scores["mem"].isna().sum()),
    )
    return scores


def score_influence(
    subset_masks: np.ndarray, test_correct: np.ndarray, memorization_scores: pd.DataFrame, scoring: dict[str, Any]
) -> pd.DataFrame:
    """Pairs (train_index, test_index) with infl ≥ ``scoring.influence_threshold``, plus the
    ``scoring.top_k`` most influential training examples of each test example, with the
    training example's ``mem``."""
    params = parse(ScoringParams, scoring, "scoring")
    pairs = influence(
        subset_masks,
        test_correct,
        threshold=params.influence_threshold,
        top_k=params.top_k,
        max_block_mb=params.max_block_mb,
    )
    pairs["mem"] = memorization_scores["mem"].to_numpy()[pairs["train_index"].to_numpy()]
    logger.info(
        "influence: %d pairs, %d at or above %.2f",
        len(pairs), int((pairs["infl"] >= params.influence_threshold).sum()), params.influence_threshold,
    )
    return pairs


def summarize_scores(
    memorization_scores: pd.DataFrame, influence_pairs: pd.DataFrame, scoring: dict[str, Any]
) -> dict[str, Any]:
    """Headline figures for the parent MLflow run."""
    params = parse(ScoringParams, scoring, "scoring")
    mem = memorization_scores["mem"]
    strong = (influence_pairs["infl"] >= params.influence_threshold) & (
        influence_pairs["mem"] >= params.memorization_threshold
    )
    figures = {
        "mem_mean": float(mem.mean()),
        "mem_median_se": float(memorization_scores["mem_se"].median()),
        "fraction_mem_above_threshold": float((mem >= params.memorization_threshold).mean()),
        "high_influence_pairs": int((influence_pairs["infl"] >= params.influence_threshold).sum()),
        "high_influence_high_mem_pairs": int(strong.sum()),
    }
    return {name: {"value": value, "step": 0} for name, value in figures.items()}


def published_pairs(influence_pairs: pd.DataFrame, scoring: dict[str, Any]) -> dict[str, np.ndarray]:
    """The paper's selection of high-influence pairs (infl ≥ influence threshold and mem ≥
    memorization threshold) in the layout of its released files: ``tr_idx``, ``tt_idx``,
    ``infl``, ``mem``."""
    params = parse(ScoringParams, scoring, "scoring")
    selected = influence_pairs[
        (influence_pairs["infl"] >= params.influence_threshold)
        & (influence_pairs["mem"] >= params.memorization_threshold)
    ]
    return {
        "tr_idx": selected["train_index"].to_numpy(np.int64),
        "tt_idx": selected["test_index"].to_numpy(np.int64),
        "infl": selected["infl"].to_numpy(np.float64),
        "mem": selected["mem"].to_numpy(np.float64),
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
