"""A study's headline findings: the numbers that the report's sentences and the console's
closing summary both state, computed once from the study's tables.

Every table but the memorization scores is optional: a run that scored without training
(``kedro run --pipelines scoring``) or without the diagnostics still gets the findings it has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from longtail.estimate import Selection


@dataclass(frozen=True)
class Accuracy:
    """The subset models' test accuracy: mean, lowest and highest over the models."""

    n_models: int
    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class Removal:
    """One threshold of the removal experiment: mean test accuracy with the examples of
    mem ≥ ``threshold`` removed, and with as many random ones removed."""

    threshold: float
    n_removed: int
    memorized_removed: float
    random_removed: float
    models_per_point: int

    @property
    def points(self) -> float:
        """How many points of test accuracy removing the memorized costs beyond random removal."""
        return 100 * (self.random_removed - self.memorized_removed)


@dataclass(frozen=True)
class Halves:
    """Agreement between two disjoint halves of the models, for the chosen selection."""

    models_per_half: int
    spearman_mem: float
    jaccard_pairs: float  # NaN when neither half reports a pair
    pairs_replicated: float  # share of the first half's pairs found by the second; NaN without pairs


@dataclass(frozen=True)
class NoiseDetection:
    """How the best score and mem rank the planted label errors (ROC AUC)."""

    n_noisy: int
    best_score: str
    best_roc_auc: float
    mem_roc_auc: float


@dataclass(frozen=True)
class Findings:
    n_train: int
    selection: Selection
    memorized: int
    memorized_half: int  # mem ≥ 0.5
    pairs_reported: int
    pairs_tested: int
    strongest_pair: float  # the largest reported infl; NaN without reported pairs
    accuracy: Accuracy | None = None
    removal: Removal | None = None
    halves: Halves | None = None
    noise: NoiseDetection | None = None


def find(
    memorization_scores: pd.DataFrame,
    selection: Selection,
    reported_pairs: pd.DataFrame | None = None,
    pairs_tested: int = 0,
    subset_model_runs: pd.DataFrame | None = None,
    removal_curve: pd.DataFrame | None = None,
    agreement: pd.DataFrame | None = None,
    label_noise_detection: pd.DataFrame | None = None,
) -> Findings:
    """The findings of whatever tables a run has (``pairs_tested``: the number of (training,
    test) pairs whose influence was tested, ``influence_pairs.attrs["n_tests"]``)."""
    mem = memorization_scores["mem"].to_numpy(dtype=float)
    reported = reported_pairs if reported_pairs is not None else pd.DataFrame({"infl": []})
    return Findings(
        n_train=len(mem),
        selection=selection,
        memorized=int(selection.memorized(mem, memorization_scores["mem_q"]).sum()),
        memorized_half=int((np.nan_to_num(mem, nan=-1) >= 0.5).sum()),
        pairs_reported=len(reported),
        pairs_tested=int(pairs_tested),
        strongest_pair=float(reported["infl"].max()) if len(reported) else math.nan,
        accuracy=_accuracy(subset_model_runs),
        removal=_removal(removal_curve, selection.memorization_threshold),
        halves=_halves(agreement, selection.mode),
        noise=_noise(label_noise_detection),
    )


def _accuracy(runs: pd.DataFrame | None) -> Accuracy | None:
    if runs is None or runs.empty:
        return None
    accuracy = runs["metric_test_accuracy"].to_numpy(dtype=float)
    return Accuracy(len(accuracy), float(accuracy.mean()), float(accuracy.min()), float(accuracy.max()))


def _removal(curve: pd.DataFrame | None, memorization_threshold: float) -> Removal | None:
    """The removal threshold nearest the memorization cut-off (the higher of two as near)."""
    if curve is None or curve.empty:
        return None
    means = curve.groupby(["threshold", "strategy"])["test_accuracy"].agg(["mean", "count"]).unstack("strategy")
    thresholds = means.index.to_numpy(dtype=float)
    threshold = max(thresholds, key=lambda t: (-round(abs(t - memorization_threshold), 9), t))
    row = means.loc[threshold]
    n_removed = int(curve.loc[curve["threshold"] == threshold, "n_removed"].iloc[0])
    return Removal(
        float(threshold), n_removed, float(row[("mean", "memorization")]), float(row[("mean", "random")]),
        int(row[("count", "memorization")]),
    )


def _halves(agreement: pd.DataFrame | None, mode: str) -> Halves | None:
    if agreement is None or agreement.empty:
        return None
    row = agreement.iloc[0]
    return Halves(
        int(row["models_per_half"]), float(row["spearman_mem"]), float(row[f"{mode}_jaccard_pairs"]),
        float(row[f"{mode}_pairs_replicated"]),
    )


def _noise(detection: pd.DataFrame | None) -> NoiseDetection | None:
    if detection is None or detection.empty:
        return None
    best = detection.loc[detection["roc_auc"].idxmax()]
    mem = detection.loc[detection["score"] == "mem", "roc_auc"]
    return NoiseDetection(
        int(best["n_noisy"]), str(best["score"]), float(best["roc_auc"]), float(mem.iloc[0]) if len(mem) else math.nan
    )


def duration(seconds: float) -> str:
    """A wall time in words: ``4 min 43 s``, ``2 h 5 min``, ``38 s``."""
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def rule(selection: Selection, pairs: bool = False) -> str:
    """The selection's cut-offs in words, e.g. ``mem ≥ 0.25, q ≤ 0.1``."""
    controlled = selection.mode == "controlled"
    parts = [f"infl ≥ {selection.influence_threshold:g}"] if pairs else []
    parts.append(f"mem ≥ {selection.memorization_threshold:g}")
    if controlled:
        parts.append(f"q ≤ {selection.fdr:g}")
    return ", ".join(parts)


def sentences(findings: Findings) -> list[str]:
    """The findings as the report states them: one sentence each, numbers included."""
    said = []
    if findings.accuracy is not None:
        a = findings.accuracy
        said.append(
            f"The {a.n_models:,} subset models reach a mean test accuracy of {a.mean:.1%} "
            f"({a.low:.1%} to {a.high:.1%})."
        )
    said.append(
        f"{findings.memorized:,} of {findings.n_train:,} training examples are memorized "
        f"({rule(findings.selection)}, the {findings.selection.mode} selection); "
        f"{findings.memorized_half:,} have mem ≥ 0.5."
    )
    said.append(_pairs_sentence(findings))
    if findings.removal is not None:
        r = findings.removal
        said.append(
            f"Removing the {r.n_removed:,} training examples with mem ≥ {r.threshold:g} leaves a test accuracy of "
            f"{r.memorized_removed:.1%}, against {r.random_removed:.1%} when as many random examples are removed: "
            f"{abs(r.points):.1f} points {'lower' if r.points >= 0 else 'higher'} (mean of {r.models_per_point} models each)."
        )
    if findings.halves is not None:
        said.append(halves_sentence(findings.halves))
    if findings.noise is not None:
        n = findings.noise
        said.append(
            f"Of the {n.n_noisy:,} planted label errors, {n.best_score} ranks them best (ROC AUC {n.best_roc_auc:.3f}); "
            f"mem reaches {n.mem_roc_auc:.3f}."
        )
    return said


def _pairs_sentence(findings: Findings) -> str:
    tested = f" out of {findings.pairs_tested:,} (training, test) pairs tested" if findings.pairs_tested else ""
    if not findings.pairs_reported:
        return f"No high-influence pair is reported ({rule(findings.selection, pairs=True)}){tested}."
    return (
        f"{findings.pairs_reported:,} high-influence pairs are reported ({rule(findings.selection, pairs=True)})"
        f"{tested}; the strongest has infl {findings.strongest_pair:.2f}."
    )


def halves_sentence(halves: Halves) -> str:
    start = f"Two disjoint halves of {halves.models_per_half:,} models agree on mem with Spearman {halves.spearman_mem:.2f}"
    if math.isnan(halves.jaccard_pairs):
        return start + "; neither half reports a pair."
    replicated = "" if math.isnan(halves.pairs_replicated) else f", and {halves.pairs_replicated:.0%} of the first half's replicate in the second"
    return start + f"; their reported pairs overlap with Jaccard {halves.jaccard_pairs:.2f}{replicated}."


def summary_lines(findings: Findings) -> list[str]:
    """The findings in at most five short console lines."""
    lines = []
    if findings.accuracy is not None:
        lines.append(f"subset models: mean test accuracy {findings.accuracy.mean:.1%} ({findings.accuracy.n_models:,} models)")
    lines.append(f"memorized: {findings.memorized:,} of {findings.n_train:,} training examples ({rule(findings.selection)})")
    tested = f" of {findings.pairs_tested:,} tested" if findings.pairs_tested else ""
    lines.append(f"pairs reported: {findings.pairs_reported:,}{tested} ({rule(findings.selection, pairs=True)})")
    if findings.removal is not None:
        r = findings.removal
        lines.append(
            f"removal of the {r.n_removed:,} with mem ≥ {r.threshold:g}: test accuracy {r.memorized_removed:.1%}, "
            f"{r.random_removed:.1%} with as many random ones removed"
        )
    if findings.halves is not None:
        h = findings.halves
        jaccard = "no pairs in either half" if math.isnan(h.jaccard_pairs) else f"Jaccard of reported pairs {h.jaccard_pairs:.2f}"
        lines.append(f"split halves: Spearman of mem {h.spearman_mem:.2f}, {jaccard}")
    return lines
