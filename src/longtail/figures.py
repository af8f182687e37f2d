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

from scipy import stats

from longtail.approx.measure import frontier
from longtail.estimate.evidence import Z_95

__all__ = [
    "memorization_histogram",
    "memorization_grid",
    "influence_figure",
    "removal_summary",
    "removal_curve_figure",
    "t_quantile_975",
    "precision_recall_figure",
    "convergence_figure",
    "approximation_figure",
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
    _hide_frame(ax)


def _hide_frame(ax: Axes) -> None:
    """No ticks, no frame; the axis labels stay usable."""
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

NO_EXAMPLE = "none at\nthis level"


def memorization_levels(mem: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """The grid row of each ``mem``: the nearest of ``levels`` (edges half-way between two
    levels), except that the last level is a floor: row ``k - 1`` holds every mem ≥
    ``levels[-1]`` and row ``k - 2`` stops below it. NaN gets -1."""
    levels = np.asarray(levels, dtype=float)
    if levels.ndim != 1 or len(levels) < 2 or np.any(np.diff(levels) <= 0):
        raise ValueError(f"levels must be at least two increasing values, got {levels.tolist()}")
    edges = np.r_[(levels[:-2] + levels[1:-1]) / 2, levels[-1:]]
    rows = np.searchsorted(edges, mem, side="right")
    return np.where(np.isfinite(mem), rows, -1)


def _level_label(levels: Sequence[float], row: int, count: int) -> str:
    level = f"mem ≥ {levels[row]:.2f}" if row == len(levels) - 1 else f"mem ≈ {levels[row]:.2f}"
    return f"{level}\n({count:,} examples)"


def _grid_classes(ranked: pd.DataFrame, top_row: int, max_classes: int) -> list:
    """All labels when they fit; else the ``max_classes`` with the most examples in the top
    row (the rarest to fill), shown in label order."""
    labels = sorted(ranked["label"].unique())
    if len(labels) <= max_classes:
        return labels
    top = ranked[ranked["row"] == top_row]["label"].value_counts()
    order = sorted(labels, key=lambda label: (-top.get(label, 0), label))
    return sorted(order[:max_classes])


def _two_decimals(value: float) -> str:
    """``value`` to two decimals, without the ``-0.00`` of a tiny negative estimate."""
    return f"{value:.2f}".replace("-0.00", "0.00")


def _pick(cell: pd.DataFrame, per_class: int, rng: np.random.Generator) -> pd.DataFrame:
    """``per_class`` examples of one level and class, drawn with ``rng``, in increasing mem."""
    if len(cell) > per_class:
        cell = cell.iloc[np.sort(rng.choice(len(cell), size=per_class, replace=False))]
    return cell.sort_values(["mem", "index"], kind="mergesort")


def memorization_grid(
    images: np.ndarray,
    scores: pd.DataFrame,
    levels: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 0.9),
    max_classes: int = 10,
    per_class: int = 1,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Training images from typical to most memorized, like the paper's Figure 1.

    One row per memorization level (``memorization_levels``: about each level, the last one a
    floor), top row lowest; one column per class (``per_class`` columns each) for up to
    ``max_classes`` classes (``_grid_classes``). Each image is an example of that class at
    that level drawn with ``seed``, titled ``"<label> · <mem>"``; a cell with no such example
    says so, and each row's label gives its level and how many examples it holds.
    """
    images = _require_images(images, "images")
    _require_frame(scores, "scores", SCORE_COLUMNS)
    if max_classes < 1 or per_class < 1:
        raise ValueError(f"max_classes and per_class must be positive, got {max_classes} and {per_class}")
    finite = _finite_mem(scores)
    _require_positions(finite["index"], len(images), "scores['index']")
    if finite.empty:
        return _message_figure("no finite memorization estimates")
    ranked = finite.assign(row=memorization_levels(finite["mem"].to_numpy(float), levels))
    classes = _grid_classes(ranked, len(levels) - 1, max_classes)
    counts = ranked["row"].value_counts()
    rng = np.random.default_rng(seed)

    n_cols = len(classes) * per_class
    fig = Figure(figsize=(max(1.05 * n_cols + 1.2, 6.0), 1.3 * len(levels) + 0.7), layout="constrained")
    axes = fig.subplots(len(levels), n_cols, squeeze=False)
    for row, row_axes in enumerate(axes):
        in_row = ranked[ranked["row"] == row]
        for position, label in enumerate(classes):
            cell_axes = row_axes[position * per_class : (position + 1) * per_class]
            shown = _pick(in_row[in_row["label"] == label], per_class, rng)
            for ax, idx, mem in zip(cell_axes, shown["index"], shown["mem"]):
                _show_image(ax, images[int(idx)], f"{_label_name(label, class_names)} · {_two_decimals(mem)}")
            _blank(cell_axes[len(shown):])
            if shown.empty:
                cell_axes[0].text(0.5, 0.5, NO_EXAMPLE, ha="center", va="center", fontsize=6,
                                  color="tab:gray", transform=cell_axes[0].transAxes)
        row_axes[0].axis("on")
        _hide_frame(row_axes[0])
        row_axes[0].set_ylabel(_level_label(levels, row, int(counts.get(row, 0))), fontsize=7)
    fig.suptitle("Training examples by class, from typical (top) to most memorized (bottom)", fontsize=10)
    return fig


# -------------------------------------------------------------------------- influence


def _top_pairs(pairs: pd.DataFrame, n_rows: int, per_row: int) -> list[pd.DataFrame]:
    """Per training example (strongest influence first), its ``per_row`` strongest pairs."""
    ranked = pairs.sort_values(["infl", "train_index", "test_index"], ascending=[False, True, True],
                               kind="mergesort")
    top_train = ranked["train_index"].drop_duplicates().head(n_rows)
    return [ranked[ranked["train_index"] == i].head(per_row) for i in top_train]


def influence_interval(pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """Each pair's interval for infl: ``infl_lo``/``infl_hi`` when the table has them, else
    infl ± 1.96·``infl_se`` (normal 95%); None when it has neither."""
    if {"infl_lo", "infl_hi"} <= set(pairs.columns):
        return pairs["infl_lo"].to_numpy(float), pairs["infl_hi"].to_numpy(float)
    if "infl_se" in pairs.columns:
        infl, half = pairs["infl"].to_numpy(float), Z_95 * pairs["infl_se"].to_numpy(float)
        return infl - half, infl + half
    return None


def _influence_title(label: str, infl: float, interval: tuple[float, float] | None) -> str:
    text = f"{label} · infl {infl:.2f}"
    return text if interval is None else f"{text}\n[{interval[0]:.2f}, {interval[1]:.2f}]"


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
    ``"<label> · infl <infl>"`` and, on a second line, its 95% interval
    (``influence_interval``) when the table gives one. Empty ``pairs`` give a figure saying
    there are no pairs.
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

    interval = influence_interval(pairs)
    if interval is not None:
        pairs = pairs.assign(infl_lo=interval[0], infl_hi=interval[1])
    rows = _top_pairs(pairs, n_rows, per_row)
    fig = Figure(figsize=(max(1.5 * (per_row + 1), 6.0), 1.75 * len(rows) + 0.7), layout="constrained")
    axes = fig.subplots(len(rows), per_row + 1, squeeze=False)
    for row_axes, group in zip(axes, rows):
        train_idx = int(group["train_index"].iloc[0])
        label = _label_name(train_labels[train_idx], class_names)
        _show_image(row_axes[0], train_images[train_idx], f"train {label} · mem {group['mem'].iloc[0]:.2f}")
        row_axes[0].set_ylabel(f"#{train_idx}", fontsize=7)
        for ax, (_, pair) in zip(row_axes[1:], group.iterrows()):
            bounds = (pair["infl_lo"], pair["infl_hi"]) if interval is not None else None
            title = _influence_title(_label_name(test_labels[int(pair["test_index"])], class_names), pair["infl"], bounds)
            _show_image(ax, test_images[int(pair["test_index"])], title)
        _blank(row_axes[1 + len(group):])
    caption = "Training example (left) and the test examples it influences most"
    fig.suptitle(caption + ("\n(infl and its 95% interval)" if interval is not None else ""), fontsize=10)
    return fig


# ---------------------------------------------------------------------- removal curve


def t_quantile_975(df: int) -> float:
    """Two-sided 95% Student-t critical value ``t_{0.975, df}``."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return float(stats.t.ppf(0.975, df))


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


def _models_per_point(counts: pd.Series) -> str:
    low, high = int(counts.min()), int(counts.max())
    models = f"{low}" if low == high else f"{low}–{high}"
    return f"mean of {models} model{'s' if high > 1 else ''} per point"


def _plot_strategy(ax: Axes, rows: pd.DataFrame, strategy: str) -> None:
    color, label = _STRATEGY_STYLE.get(strategy, (None, str(strategy)))
    label = f"{label}, {_models_per_point(rows['n'])}"
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

    Lines are means over repeats with shaded 95% Student-t intervals, the legend says how
    many models each point averages; memorization points are annotated with their
    threshold θ. The x axis is inverted so that moving right means more training examples
    removed.
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


# ------------------------------------------------------------------------ approximations

_APPROXIMATION_PANELS = (
    ("memorization", "precision_at_r_mem", "precision at |R_mem|", "r_mem", "|R_mem|"),
    ("influence", "pair_recall_at_r_pairs", "recall of R_pairs among the top |R_pairs|", "r_pairs", "|R_pairs|"),
)


def _plot_frontier(ax: Axes, rows: pd.DataFrame, column: str) -> None:
    """Each method as a labelled point, and the frontier (no method both cheaper and closer)
    as a step line through its points."""
    cost, value = rows["cost_models"].to_numpy(float), rows[column].to_numpy(float)
    on = frontier(cost, value)
    ax.scatter(cost[~on], value[~on], color="tab:gray", s=18, zorder=2)
    ax.scatter(cost[on], value[on], color="tab:red", s=24, zorder=3, label="frontier")
    best = np.argsort(cost[on], kind="stable")
    ax.step(cost[on][best], value[on][best], where="post", color="tab:red", linewidth=1, zorder=1)
    for method, x, y in zip(rows["method"], cost, value):
        if np.isfinite(y):
            ax.annotate(str(method), (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6)


def approximation_figure(agreement: pd.DataFrame) -> Figure:
    """Cost in subset-model trainings (log axis) against agreement with the exact estimate, one
    point per method: left, precision at |R_mem| of the memorization scores; right, recall of
    R_pairs among each method's |R_pairs| highest-scored pairs. The red steps join the
    frontier: the methods that no other beats at equal or lower cost."""
    _require_frame(agreement, "agreement", ("method", "target", "cost_models", "r_mem", "r_pairs",
                                            *(panel[1] for panel in _APPROXIMATION_PANELS)))
    if agreement.empty:
        return _message_figure("no approximations to compare", title="Approximations against the exact estimate")
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    for ax, (target, column, label, size, size_label) in zip(fig.subplots(1, 2), _APPROXIMATION_PANELS):
        rows = agreement[agreement["target"] == target]
        if rows.empty:
            ax.text(0.5, 0.5, f"no {target} methods", ha="center", va="center", transform=ax.transAxes)
            ax.axis("off")
            continue
        _plot_frontier(ax, rows, column)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("cost (subset-model trainings)")
        ax.set_ylabel(label)
        ax.set_title(f"{target} ({size_label} = {int(rows[size].iloc[0])})")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
    fig.suptitle("Approximations against the exact estimate")
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
