"""Figures for the memorization / influence reproduction (Feldman & Zhang 2020).

Pure functions from numpy arrays and pandas DataFrames to ``matplotlib.figure.Figure``.
Figures are built with ``Figure`` directly (Agg canvas, no pyplot), so nothing is
registered in pyplot's global state and nothing leaks between calls; Kedro's
``MatplotlibDataset`` (or ``fig.savefig``) can write them as they are.

Conventions:

* images: float array ``(N, C, H, W)`` in ``[0, 1]`` with ``C`` 1 (grayscale) or 3 (RGB);
* scores: one row per training example with ``index`` (position in the train split),
  ``label`` and ``mem`` (may be NaN);
* pairs: ``train_index``, ``test_index``, ``infl``, ``mem`` (mem of the training example);
* curve: ``threshold``, ``strategy``, ``n_removed``, ``train_fraction``, ``repeat``,
  ``test_accuracy``.

Invalid input raises ``ValueError`` naming what is missing or wrong.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

try:  # scipy ships with scikit-learn; the fallback keeps this module dependency-light.
    from scipy.stats import t as _student_t
except ImportError:  # pragma: no cover - exercised only without scipy
    _student_t = None

__all__ = [
    "memorization_histogram",
    "memorization_grid",
    "influence_figure",
    "removal_summary",
    "removal_curve_figure",
    "t_quantile_975",
    "precision_recall_figure",
    "convergence_figure",
]

SCORE_COLUMNS = ("index", "label", "mem")
PAIR_COLUMNS = ("train_index", "test_index", "infl", "mem")
CURVE_COLUMNS = ("threshold", "strategy", "n_removed", "train_fraction", "repeat", "test_accuracy")
SUMMARY_COLUMNS = ["threshold", "strategy", "n_removed", "train_fraction", "mean", "ci_low", "ci_high", "n"]
NO_PAIRS_MESSAGE = "no pairs above the threshold"

_STRATEGY_STYLE = {
    "memorization": ("tab:red", "removed by memorization (highest first)"),
    "random": ("tab:blue", "removed at random"),
}
# t_{0.975, df} for df = 1..30, used only when scipy is unavailable.
_T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004,
         2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.13145, 2.119905,
         2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899,
         2.059539, 2.055529, 2.051831, 2.048407, 2.04523, 2.042272)
_Z975 = 1.959963984540054


# --------------------------------------------------------------------------- validation


def _require_frame(df: object, name: str, columns: Iterable[str]) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} is missing column(s): {', '.join(missing)}")
    return df


def _require_images(images: object, name: str) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise ValueError(f"{name} must have 4 dimensions (N, C, H, W), got ndim={arr.ndim} {arr.shape}")
    if arr.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels in axis 1 (N, C, H, W), got shape {arr.shape}")
    return arr


def _require_positions(positions: pd.Series, size: int, what: str) -> None:
    """Each position must index an image: an out-of-range index means mismatched inputs."""
    values = positions.to_numpy()
    if values.size and (values.min() < 0 or values.max() >= size):
        raise ValueError(
            f"{what} must lie in [0, {size}) to index the images, got range [{values.min()}, {values.max()}]"
        )


def _require_labels(labels: object, n_images: int, name: str) -> np.ndarray:
    arr = np.asarray(labels).reshape(-1)
    if len(arr) != n_images:
        raise ValueError(f"{name} has length {len(arr)} but there are {n_images} images")
    return arr


# ------------------------------------------------------------------------------ drawing


def _label_name(label: object, class_names: Sequence[str] | None) -> str:
    if class_names is None:
        return str(label)
    idx = int(label)
    if not 0 <= idx < len(class_names):
        raise ValueError(f"label {idx} is out of range for class_names of length {len(class_names)}")
    return str(class_names[idx])


def _show_image(ax: Axes, image: np.ndarray, title: str) -> None:
    """Draw one (C, H, W) image; ticks and frame are hidden but axis labels stay usable."""
    img = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(np.transpose(img, (1, 2, 0)), interpolation="nearest")
    ax.set_title(title, fontsize=7, pad=2)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _blank(axes: Iterable[Axes]) -> None:
    for ax in axes:
        ax.axis("off")


def _message_figure(message: str, title: str | None = None) -> Figure:
    fig = Figure(figsize=(6, 2), layout="constrained")
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, transform=ax.transAxes)
    ax.axis("off")
    if title:
        fig.suptitle(title)
    return fig


def _finite_mem(scores: pd.DataFrame) -> pd.DataFrame:
    mem = pd.to_numeric(scores["mem"], errors="coerce")
    return scores.assign(mem=mem)[np.isfinite(mem.to_numpy(dtype=float))]


# -------------------------------------------------------------------------- histogram


def memorization_histogram(scores: pd.DataFrame, bins: int = 50) -> Figure:
    """Histogram of memorization estimates; NaN scores are dropped and counted in the title."""
    _require_frame(scores, "scores", ("mem",))
    finite = _finite_mem(scores)["mem"].to_numpy(dtype=float)
    n_dropped = len(scores) - len(finite)

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.hist(finite, bins=bins, color="tab:gray", edgecolor="white", linewidth=0.3)
    ax.set_xlabel("memorization estimate")
    ax.set_ylabel("training examples")
    ax.text(0.98, 0.95, f"n = {len(finite)}", transform=ax.transAxes, ha="right", va="top")
    title = "Distribution of memorization estimates"
    if n_dropped:
        title += f" ({n_dropped} NaN dropped)"
    ax.set_title(title)
    return fig


# ------------------------------------------------------------------------------- grid


def _band_label(band: pd.DataFrame) -> str:
    return f"mem {band['mem'].min():.2f}–{band['mem'].max():.2f}"


def memorization_grid(
    images: np.ndarray,
    scores: pd.DataFrame,
    n_rows: int = 6,
    per_row: int = 10,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Training images by memorization, like the paper's Figure 1.

    Finite scores are sorted by ``mem`` and split into ``n_rows`` equal-count bands
    (quantiles), top row lowest. ``per_row`` examples are sampled per band with ``seed``
    and shown in increasing ``mem`` order, each titled ``"<label> · <mem>"``; the band's
    range is the y label of the row's first image.
    """
    images = _require_images(images, "images")
    _require_frame(scores, "scores", SCORE_COLUMNS)
    if n_rows < 1 or per_row < 1:
        raise ValueError(f"n_rows and per_row must be positive, got {n_rows} and {per_row}")
    ranked = _finite_mem(scores).sort_values(["mem", "index"], kind="mergesort")
    _require_positions(ranked["index"], len(images), "scores['index']")
    if ranked.empty:
        return _message_figure("no finite memorization estimates")

    bands = [b for b in np.array_split(np.arange(len(ranked)), n_rows) if len(b)]
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(max(1.2 * per_row, 6.0), 1.35 * len(bands) + 0.6), layout="constrained")
    axes = fig.subplots(len(bands), per_row, squeeze=False)
    for row, positions in zip(axes, bands):
        band = ranked.iloc[positions]
        take = np.sort(rng.choice(len(band), size=min(per_row, len(band)), replace=False))
        shown = band.iloc[take]
        for ax, idx, label, mem in zip(row, shown["index"], shown["label"], shown["mem"]):
            _show_image(ax, images[int(idx)], f"{_label_name(label, class_names)} · {mem:.2f}")
        _blank(row[len(take):])
        row[0].set_ylabel(_band_label(band), fontsize=7)
    fig.suptitle("Training examples by memorization estimate (top: lowest, bottom: highest)")
    return fig


# -------------------------------------------------------------------------- influence


def _top_pairs(pairs: pd.DataFrame, n_rows: int, per_row: int) -> list[pd.DataFrame]:
    """Per training example (strongest influence first), its ``per_row`` strongest pairs."""
    ranked = pairs.sort_values(["infl", "train_index", "test_index"], ascending=[False, True, True],
                               kind="mergesort")
    top_train = ranked["train_index"].drop_duplicates().head(n_rows)
    return [ranked[ranked["train_index"] == i].head(per_row) for i in top_train]


def influence_figure(
    train_images: np.ndarray,
    test_images: np.ndarray,
    pairs: pd.DataFrame,
    train_labels: Sequence[int] | np.ndarray,
    test_labels: Sequence[int] | np.ndarray,
    n_rows: int = 5,
    per_row: int = 4,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """High-influence pairs, like the paper's Figure 6.

    Each row is a training example (the ``n_rows`` whose strongest influence is highest,
    strongest first): its image titled ``"train <label> · mem <mem>"`` with ``#<train_index>``
    as y label, then up to ``per_row`` test images it influences most, each titled
    ``"<label> · infl <infl>"``. Empty ``pairs`` give a figure saying there are no pairs.
    """
    train_images = _require_images(train_images, "train_images")
    test_images = _require_images(test_images, "test_images")
    _require_frame(pairs, "pairs", PAIR_COLUMNS)
    train_labels = _require_labels(train_labels, len(train_images), "train_labels")
    test_labels = _require_labels(test_labels, len(test_images), "test_labels")
    if n_rows < 1 or per_row < 1:
        raise ValueError(f"n_rows and per_row must be positive, got {n_rows} and {per_row}")
    pairs = pairs[np.isfinite(pd.to_numeric(pairs["infl"], errors="coerce").to_numpy(dtype=float))]
    _require_positions(pairs["train_index"], len(train_images), "pairs['train_index']")
    _require_positions(pairs["test_index"], len(test_images), "pairs['test_index']")
    if pairs.empty:
        return _message_figure(NO_PAIRS_MESSAGE, title="High-influence train/test pairs")

    rows = _top_pairs(pairs, n_rows, per_row)
    fig = Figure(figsize=(max(1.5 * (per_row + 1), 6.0), 1.6 * len(rows) + 0.6), layout="constrained")
    axes = fig.subplots(len(rows), per_row + 1, squeeze=False)
    for row_axes, group in zip(axes, rows):
        train_idx = int(group["train_index"].iloc[0])
        label = _label_name(train_labels[train_idx], class_names)
        _show_image(row_axes[0], train_images[train_idx], f"train {label} · mem {group['mem'].iloc[0]:.2f}")
        row_axes[0].set_ylabel(f"#{train_idx}", fontsize=7)
        for ax, test_idx, infl in zip(row_axes[1:], group["test_index"], group["infl"]):
            title = f"{_label_name(test_labels[int(test_idx)], class_names)} · infl {infl:.2f}"
            _show_image(ax, test_images[int(test_idx)], title)
        _blank(row_axes[1 + len(group):])
    fig.suptitle("Training example (left) and the test examples it influences most")
    return fig


# ---------------------------------------------------------------------- removal curve


def t_quantile_975(df: int) -> float:
    """Two-sided 95% Student-t critical value ``t_{0.975, df}``.

    Uses scipy when importable; otherwise a table for ``df <= 30`` and the
    Cornish-Fisher expansion beyond (error < 2e-6 there).
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if _student_t is not None:
        return float(_student_t.ppf(0.975, df))
    if df <= len(_T975):
        return _T975[df - 1]
    z, v = _Z975, float(df)
    return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3))


def _mean_ci(values: pd.Series) -> pd.Series:
    """Mean and Student-t 95% interval over repeats; a single repeat has no interval (NaN)."""
    acc = values.dropna().to_numpy(dtype=float)
    n = len(acc)
    mean = float(acc.mean()) if n else math.nan
    half = t_quantile_975(n - 1) * acc.std(ddof=1) / math.sqrt(n) if n >= 2 else math.nan
    return pd.Series({"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": n})


def removal_summary(curve: pd.DataFrame) -> pd.DataFrame:
    """Aggregate repeats of the removal experiment.

    One row per (threshold, strategy, n_removed, train_fraction) with the mean test
    accuracy, a 95% Student-t interval ``mean ± t_{0.975,n-1}·sd/√n`` (NaN when n < 2)
    and the number of repeats ``n``; sorted by strategy then increasing ``n_removed``.
    """
    _require_frame(curve, "curve", CURVE_COLUMNS)
    keys = ["threshold", "strategy", "n_removed", "train_fraction"]
    if curve.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    summary = (
        curve.groupby(keys, dropna=False, sort=False)["test_accuracy"]
        .apply(_mean_ci)
        .unstack()
        .reset_index()
    )
    summary["n"] = summary["n"].astype(int)
    summary = summary.sort_values(["strategy", "n_removed", "threshold"], kind="mergesort")
    return summary[SUMMARY_COLUMNS].reset_index(drop=True)


def _plot_strategy(ax: Axes, rows: pd.DataFrame, strategy: str) -> None:
    color, label = _STRATEGY_STYLE.get(strategy, (None, str(strategy)))
    rows = rows.sort_values("train_fraction")
    x, y = rows["train_fraction"].to_numpy(float), rows["mean"].to_numpy(float)
    (line,) = ax.plot(x, y, marker="o", color=color, label=label)
    if rows["n"].max() >= 2:
        ax.fill_between(x, rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float),
                        color=line.get_color(), alpha=0.2, linewidth=0)
    if strategy == "memorization":
        for xi, yi, thr in zip(x, y, rows["threshold"]):
            if pd.notna(thr):
                ax.annotate(f"θ={thr:g}", (xi, yi), textcoords="offset points", xytext=(0, -9),
                            ha="center", va="top", fontsize=7, color=line.get_color())


def removal_curve_figure(curve: pd.DataFrame) -> Figure:
    """Test accuracy vs fraction of the training set kept, for each removal strategy.

    Lines are means over repeats with shaded 95% Student-t intervals; memorization
    points are annotated with their threshold θ. The x axis is inverted so that
    moving right means more training examples removed.
    """
    summary = removal_summary(curve)
    if summary.empty:
        return _message_figure("no removal results")
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    order = [s for s in _STRATEGY_STYLE if s in set(summary["strategy"])]
    order += sorted(set(summary["strategy"]) - set(order), key=str)
    for strategy in order:
        _plot_strategy(ax, summary[summary["strategy"] == strategy], strategy)
    ax.invert_xaxis()
    ax.set_xlabel("fraction of training set kept (more removed →)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Removing high-memorization vs random training examples")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig


# -------------------------------------------------------------------------- diagnostics

NO_LABEL_NOISE_MESSAGE = "no planted label errors (dataset.label_noise = 0): nothing to detect"


def precision_recall_figure(curves: pd.DataFrame, detection: pd.DataFrame, noisy_fraction: float) -> Figure:
    """Precision against recall of each score at finding the planted label errors.

    ``curves``: ``score``, ``recall``, ``precision`` (one point per distinct threshold, highest
    first); ``detection``: ``score``, ``average_precision``, ``roc_auc`` for the legend. The
    dotted line is a random ranking's precision, the share of noisy examples. Empty ``curves``
    give a figure saying there is nothing to detect.
    """
    _require_frame(curves, "curves", ("score", "recall", "precision"))
    _require_frame(detection, "detection", ("score", "average_precision", "roc_auc"))
    if curves.empty:
        return _message_figure(NO_LABEL_NOISE_MESSAGE, title="Finding planted label errors")
    legend = detection.set_index("score")
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for score, curve in curves.groupby("score", sort=False):
        recall = np.r_[0.0, curve["recall"].to_numpy(float)]
        precision = np.r_[curve["precision"].iloc[0], curve["precision"].to_numpy(float)]
        label = f"{score} (AP {legend.at[score, 'average_precision']:.2f}, AUC {legend.at[score, 'roc_auc']:.2f})"
        ax.step(recall, precision, where="pre", label=label)
    ax.axhline(noisy_fraction, color="tab:gray", linestyle=":", label=f"random ({noisy_fraction:.2f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (share of flipped labels found)")
    ax.set_ylabel("precision (share of flagged examples that are flipped)")
    ax.set_title("Finding planted label errors")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig


def _model_axis(ax: Axes, counts: Sequence[float], label: str) -> None:
    """A log axis of numbers of models, labelled at ``counts`` only."""
    ax.set_xscale("log")
    ax.set_xticks(counts, [f"{c:,.0f}" for c in counts])
    ax.minorticks_off()
    ax.set_xlabel(label)


def _plot_se(ax: Axes, convergence: pd.DataFrame) -> None:
    """Median standard errors against models, and the 1/√n extrapolation to the target."""
    n = convergence["n_models"].to_numpy(float)
    se = convergence["median_mem_se_memorized"].to_numpy(float)
    ax.plot(n, se, marker="o", color="tab:red", label="median mem_se, memorized examples")
    ax.plot(n, convergence["median_mem_se"].to_numpy(float), marker="o", color="tab:gray", label="median mem_se, all")
    needed, target_se = convergence[["models_for_target_se", "target_se"]].iloc[-1]
    ticks = list(n)
    if np.isfinite(needed):
        reach = np.geomspace(*sorted((n[-1], needed)), 20)
        ax.plot(reach, se[-1] * np.sqrt(n[-1] / reach), color="tab:red", linestyle="--",
                label=f"∝ 1/√n from {n[-1]:,.0f}: ≈ {needed:,.0f} models for {target_se:g}")
        if not n[0] <= needed <= n[-1]:  # inside, it would crowd the counts' labels
            ticks.append(needed)
    ax.axhline(target_se, color="black", linestyle=":", linewidth=1)
    _model_axis(ax, sorted(set(ticks)), "models")
    ax.set_ylabel("standard error of mem")
    ax.legend(loc="best", fontsize=7)


def convergence_figure(convergence: pd.DataFrame) -> Figure:
    """How the estimates settle as models are added: left, the median standard error of mem
    (and its 1/√n extrapolation to ``target_se``, from the last row); right, the agreement between two halves of
    the models (Spearman of mem, Jaccard of the selected pairs)."""
    _require_frame(convergence, "convergence", (
        "n_models", "median_mem_se", "median_mem_se_memorized", "target_se", "models_for_target_se", "spearman_mem",
        "jaccard_pairs",
    ))
    if convergence.empty:
        return _message_figure("no convergence results")
    fig = Figure(figsize=(10, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    _plot_se(left, convergence)
    n = convergence["n_models"].to_numpy(float)
    for column, label in (("spearman_mem", "Spearman of mem"), ("jaccard_pairs", "Jaccard of high-influence pairs")):
        right.plot(n, convergence[column].to_numpy(float), marker="o", label=label)
    _model_axis(right, list(n), "models (split into two halves)")
    right.set_ylim(0, 1.02)
    right.set_ylabel("agreement between halves")
    right.legend(loc="best", fontsize=7)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle("Convergence with the number of models")
    return fig


# ------------------------------------------------------------------------ tabular data


def rows_table_figure(rows: pd.DataFrame, title: str) -> Figure:
    """``rows`` drawn as a table (floats to 3 decimals): for tabular data, which has no images to
    show, in place of the memorization grid and the influence figure. Empty ``rows`` give a
    figure saying so."""
    _require_frame(rows, "rows", ())
    if rows.empty:
        return _message_figure("no rows to show", title=title)
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in rows.itertuples(index=False)]
    fig = Figure(figsize=(max(1.3 * len(rows.columns), 6.0), 0.2 * (len(rows) + 1) + 0.6), layout="constrained")
    ax = fig.add_subplot()
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=[str(c) for c in rows.columns], loc="center", cellLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    ax.set_title(title)
    return fig
