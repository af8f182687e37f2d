"""Reporting: the study's figures (PNG, versioned, logged to MLflow)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from longtail import figures
from longtail.estimate import Selection
from longtail.params import ReportingParams, ScoringParams, parse


def plot_memorization_histogram(memorization_scores: pd.DataFrame) -> Figure:
    """Histogram of the memorization estimates."""
    return figures.memorization_histogram(memorization_scores)


def class_names(examples: pd.DataFrame) -> list[str] | None:
    """Label → class name, from the ``examples`` table (None when it has no names, or a
    class index has no example to name it)."""
    if "class_name" not in examples:
        return None
    names = examples.drop_duplicates("original_label").set_index("original_label")["class_name"]
    n_classes = int(names.index.max()) + 1
    return None if len(names) != n_classes else [str(names[c]) for c in range(n_classes)]


def plot_memorization_grid(
    train_images: np.ndarray, memorization_scores: pd.DataFrame, examples: pd.DataFrame, reporting: dict[str, Any]
) -> Figure:
    """Training images sorted by memorization, rows from low to high (the paper's Figure 1)."""
    params = parse(ReportingParams, reporting, "reporting")
    return figures.memorization_grid(
        train_images,
        memorization_scores,
        n_rows=params.grid_rows,
        per_row=params.grid_per_row,
        seed=params.seed,
        class_names=class_names(examples),
    )


def plot_influence_pairs(
    train_images: np.ndarray,
    test_images: np.ndarray,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    reported_pairs: pd.DataFrame,
    examples: pd.DataFrame,
    scoring: dict[str, Any],
    reporting: dict[str, Any],
) -> Figure:
    """The reported pairs (``scoring.selection``): each training image followed by the test
    images it influences most (the paper's Figure 6). The pairs were selected by the scoring
    pipeline; a table selected with other cut-offs than ``scoring`` now holds is refused, since
    the pairs those cut-offs would add are not in it (rerun the scoring pipeline)."""
    _check_selection(reported_pairs, parse(ScoringParams, scoring, "scoring"))
    params = parse(ReportingParams, reporting, "reporting")
    return figures.influence_figure(
        train_images,
        test_images,
        reported_pairs,
        train_labels,
        test_labels,
        n_rows=params.influence_rows,
        per_row=params.influence_per_row,
        class_names=class_names(examples),
    )


def _check_selection(reported_pairs: pd.DataFrame, scoring: ScoringParams) -> None:
    wanted = {**Selection.of(scoring).parameters(), "pairs": scoring.pairs}
    carried = reported_pairs.attrs.get("selection")
    if carried != wanted:
        raise ValueError(
            f"reported_pairs was selected with {carried}, but the scoring parameters now ask for {wanted}; "
            "reporting cannot reselect from it (pairs the new cut-offs would report may not be in it): "
            "rerun `kedro run --pipelines scoring,reporting` with these parameters"
        )


def plot_removal_curve(removal_curve: pd.DataFrame) -> Figure:
    """Test accuracy against the fraction of training data kept, for both removal strategies."""
    return figures.removal_curve_figure(removal_curve)
