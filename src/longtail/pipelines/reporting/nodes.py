"""Reporting: the study's figures (PNG, versioned, logged to MLflow) and its report, one
self-contained HTML page."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from longtail import figures, report
from longtail.params import DatasetParams, ReportingParams, SamplingParams, ScoringParams, TrainingParams
from longtail.report import class_names, is_table

from ..scoring.nodes import carried_selection


def plot_memorization_histogram(memorization_scores: pd.DataFrame) -> Figure:
    """Histogram of the memorization estimates."""
    return figures.memorization_histogram(memorization_scores)


def _rows_of(examples: pd.DataFrame, split: str) -> pd.DataFrame:
    """One split's examples indexed by their position in it."""
    return examples[examples["split"] == split].set_index("index")


def _named(labels: pd.Series, examples: pd.DataFrame) -> list[str]:
    """The class names of (training) labels."""
    names = class_names(examples)
    return [names[int(label)] if names else str(label) for label in labels]


def most_memorized_rows(memorization_scores: pd.DataFrame, examples: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` training rows with the highest memorization: their row in the file, class
    (of the label trained on), whether that label was flipped, and the estimate."""
    scores = memorization_scores[np.isfinite(memorization_scores["mem"].to_numpy(dtype=float))]
    top = scores.sort_values(["mem", "index"], ascending=[False, True], kind="mergesort").head(n)
    train = _rows_of(examples, "train").loc[top["index"]]
    return pd.DataFrame(
        {
            "row_id": train["row_id"].to_numpy(),
            "class": _named(train["label"], examples),
            "noisy": train["noisy"].to_numpy(),
            **{column: top[column].to_numpy(dtype=float) for column in ("mem", "mem_se", "p_in", "p_out")},
        }
    )


def strongest_pairs(pairs: pd.DataFrame, examples: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` strongest pairs: the training and the test row in the file, their labels, infl and mem."""
    top = pairs.sort_values(["infl", "train_index", "test_index"], ascending=[False, True, True], kind="mergesort").head(n)
    train, test = _rows_of(examples, "train").loc[top["train_index"]], _rows_of(examples, "test").loc[top["test_index"]]
    return pd.DataFrame(
        {
            "train_row_id": train["row_id"].to_numpy(),
            "train_class": _named(train["label"], examples),
            "mem": top["mem"].to_numpy(dtype=float),
            "test_row_id": test["row_id"].to_numpy(),
            "test_class": _named(test["label"], examples),
            "infl": top["infl"].to_numpy(dtype=float),
        }
    )


def plot_memorization_grid(
    train_images: np.ndarray, memorization_scores: pd.DataFrame, examples: pd.DataFrame, reporting: ReportingParams
) -> Figure:
    """Training images by class, from typical to most memorized (the paper's Figure 1)."""
    if is_table(examples):
        n_rows = len(reporting.grid_levels) * reporting.grid_classes * reporting.grid_per_class
        rows = most_memorized_rows(memorization_scores, examples, n_rows)
        return figures.rows_table_figure(rows, "Most memorized training rows")
    return figures.memorization_grid(
        train_images,
        memorization_scores,
        levels=reporting.grid_levels,
        max_classes=reporting.grid_classes,
        per_class=reporting.grid_per_class,
        seed=reporting.seed,
        class_names=class_names(examples),
    )


def plot_influence_pairs(
    train_images: np.ndarray,
    test_images: np.ndarray,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    reported_pairs: pd.DataFrame,
    examples: pd.DataFrame,
    scoring: ScoringParams,
    reporting: ReportingParams,
) -> Figure:
    """The reported pairs (``scoring.selection``): each training image followed by the test
    images it influences most (the paper's Figure 6). The pairs were selected by the scoring
    pipeline; a table selected with other cut-offs than ``scoring`` now holds is refused, since
    the pairs those cut-offs would add are not in it (rerun the scoring pipeline)."""
    _check_selection(reported_pairs, scoring)
    if is_table(examples):
        rows = strongest_pairs(reported_pairs, examples, reporting.influence_rows * reporting.influence_per_row)
        return figures.rows_table_figure(rows, "High-influence pairs: training row and the test row it influences")
    return figures.influence_figure(
        train_images,
        test_images,
        reported_pairs,
        train_labels,
        test_labels,
        n_rows=reporting.influence_rows,
        per_row=reporting.influence_per_row,
        class_names=class_names(examples),
    )


def _check_selection(reported_pairs: pd.DataFrame, scoring: ScoringParams) -> None:
    wanted = carried_selection(scoring)
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


def write_study_report(
    run_context: dict[str, Any],
    examples: pd.DataFrame,
    train_images: np.ndarray,
    test_images: np.ndarray,
    memorization_scores: pd.DataFrame,
    influence_pairs: pd.DataFrame,
    reported_pairs: pd.DataFrame,
    subset_model_runs: pd.DataFrame,
    training_provenance: dict[str, Any],
    removal_curve: pd.DataFrame,
    agreement: pd.DataFrame,
    convergence: pd.DataFrame,
    label_noise_detection: pd.DataFrame,
    dataset: DatasetParams,
    sampling: SamplingParams,
    training: TrainingParams,
    scoring: ScoringParams,
    reporting: ReportingParams,
    approximation_agreement: pd.DataFrame | None = None,
) -> str:
    """The study's report (``longtail.report``), one HTML page holding everything it shows;
    ``run_context`` is what the run knows of itself (``longtail.hooks.RunContextHook``), and
    ``approximation_agreement`` (columns ``method``, ``cost_models`` and any metrics), when
    given and not empty (the approximation pipeline has run), adds the cheap approximations'
    agreement table."""
    if approximation_agreement is not None and approximation_agreement.empty:
        approximation_agreement = None
    _check_selection(reported_pairs, scoring)
    tables = report.StudyTables(
        examples, train_images, test_images, memorization_scores, influence_pairs, reported_pairs, subset_model_runs,
        removal_curve, agreement, convergence, label_noise_detection, approximation_agreement,
    )
    parameters = {
        name: block.model_dump(mode="json")
        for name, block in (("dataset", dataset), ("sampling", sampling), ("training", training), ("scoring", scoring))
    }
    size = report.PageSize(
        reporting.report_per_class, reporting.report_max_examples, reporting.report_pairs_per_example,
        reporting.report_thumbnail_px,
    )
    return report.render(tables, parameters, {**run_context, "experiment": training_provenance.get("experiment")}, size)
