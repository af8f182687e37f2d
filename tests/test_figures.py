"""Tests for longtail.figures: numbers are checked against independent computations and
figure contents are read back from the axes (titles, labels, image data)."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from longtail import figures
from longtail.figures import (
    influence_figure,
    memorization_grid,
    memorization_histogram,
    removal_curve_figure,
    removal_summary,
    t_quantile_975,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# t_{0.975, 2} in closed form: for df = 2, t_p = (2p - 1) * sqrt(2 / (4p(1 - p))).
# (= 4.30265272974946...; the often-quoted 4.302652729911275 is off by ~1.6e-10.)
T975_DF2 = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))


def _png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    return buf.getvalue()


def _image_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.images]


def _all_text(fig: Figure) -> str:
    texts = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        texts += [ax.get_title()] + [t.get_text() for t in ax.texts]
    return "\n".join(texts)


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture
def gray_images() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.random((60, 1, 6, 6), dtype=np.float32)


@pytest.fixture
def scores() -> pd.DataFrame:
    """60 examples with distinct mem values in shuffled order, the last 6 NaN; label == index
    so a title's label identifies the example."""
    rng = np.random.default_rng(2)
    mem = rng.permutation(np.linspace(0.0, 1.0, 60))
    mem[-6:] = np.nan
    return pd.DataFrame({"index": np.arange(60), "label": np.arange(60), "mem": mem})


@pytest.fixture
def curve() -> pd.DataFrame:
    rows = []
    accs = {
        ("memorization", 0.5): [0.80, 0.82, 0.87],
        ("memorization", 0.3): [0.70, 0.74, 0.75],
        ("random", 0.5): [0.85, 0.86, 0.84],
        ("random", 0.3): [0.83, 0.80, 0.81],
    }
    n_removed = {0.5: 100, 0.3: 300}
    for (strategy, thr), values in accs.items():
        for rep, acc in enumerate(values):
            rows.append(dict(threshold=thr, strategy=strategy, n_removed=n_removed[thr],
                             train_fraction=1 - n_removed[thr] / 1000, repeat=rep, test_accuracy=acc))
    return pd.DataFrame(rows)


@pytest.fixture
def influence_inputs() -> dict:
    rng = np.random.default_rng(3)
    train_images = rng.random((10, 3, 5, 5), dtype=np.float32)
    test_images = rng.random((8, 3, 5, 5), dtype=np.float32)
    pairs = pd.DataFrame(
        [
            (4, 0, 0.30, 0.9), (4, 1, 0.90, 0.9), (4, 2, 0.50, 0.9),  # strongest: 0.90
            (7, 3, 0.20, 0.4),                                        # strongest: 0.20
            (2, 5, 0.70, 0.6), (2, 6, 0.10, 0.6),                     # strongest: 0.70
            (9, 7, 0.40, 0.8),                                        # strongest: 0.40
        ],
        columns=["train_index", "test_index", "infl", "mem"],
    )
    return dict(
        train_images=train_images,
        test_images=test_images,
        pairs=pairs,
        train_labels=np.arange(10) % 3,
        test_labels=np.arange(8) % 3,
    )


# ------------------------------------------------------------------------ removal summary


def test_t975_df2_constant_is_right() -> None:
    assert T975_DF2 == pytest.approx(4.302652729749464, abs=1e-14)


def test_removal_summary_matches_hand_computed_t_interval(curve: pd.DataFrame) -> None:
    summary = removal_summary(curve)
    assert list(summary.columns) == ["threshold", "strategy", "n_removed", "train_fraction",
                                     "mean", "ci_low", "ci_high", "n"]
    assert len(summary) == 4
    for (strategy, thr), group in curve.groupby(["strategy", "threshold"]):
        acc = group["test_accuracy"].to_numpy()
        mean = acc.sum() / 3
        sd = math.sqrt(((acc - mean) ** 2).sum() / 2)
        half = T975_DF2 * sd / math.sqrt(3)
        row = summary[(summary["strategy"] == strategy) & (summary["threshold"] == thr)].iloc[0]
        assert row["n"] == 3
        assert row["n_removed"] == group["n_removed"].iloc[0]
        assert row["train_fraction"] == pytest.approx(group["train_fraction"].iloc[0])
        assert row["mean"] == pytest.approx(mean, abs=1e-12)
        assert row["ci_low"] == pytest.approx(mean - half, abs=1e-9)
        assert row["ci_high"] == pytest.approx(mean + half, abs=1e-9)


def test_removal_summary_one_concrete_value(curve: pd.DataFrame) -> None:
    # memorization @ 0.5: [0.80, 0.82, 0.87] -> mean 0.83, sd sqrt(0.00130) ~ 0.0360555
    row = removal_summary(curve).query("strategy == 'memorization' and threshold == 0.5").iloc[0]
    assert row["mean"] == pytest.approx(0.83)
    assert row["ci_high"] - row["mean"] == pytest.approx(T975_DF2 * math.sqrt(0.0013) / math.sqrt(3))
    assert row["ci_high"] - row["mean"] == pytest.approx(0.0895668, abs=1e-6)


def test_removal_summary_single_repeat_has_no_interval(curve: pd.DataFrame) -> None:
    single = curve[curve["repeat"] == 0]
    summary = removal_summary(single)
    assert (summary["n"] == 1).all()
    assert summary["ci_low"].isna().all() and summary["ci_high"].isna().all()
    np.testing.assert_allclose(
        summary.sort_values(["strategy", "threshold"])["mean"],
        single.sort_values(["strategy", "threshold"])["test_accuracy"],
    )


def test_removal_summary_ignores_nan_accuracies(curve: pd.DataFrame) -> None:
    curve.loc[0, "test_accuracy"] = np.nan  # memorization @ 0.5, repeat 0
    row = removal_summary(curve).query("strategy == 'memorization' and threshold == 0.5").iloc[0]
    assert row["n"] == 2
    assert row["mean"] == pytest.approx(0.845)


def test_removal_summary_sorted_by_strategy_then_removed(curve: pd.DataFrame) -> None:
    summary = removal_summary(curve.sample(frac=1.0, random_state=0))
    assert list(summary["strategy"]) == ["memorization", "memorization", "random", "random"]
    assert list(summary["n_removed"]) == [100, 300, 100, 300]


def test_t_quantile_matches_known_values() -> None:
    known = {1: 12.706204736174707, 2: T975_DF2, 10: 2.2281388519649385, 30: 2.0422724563012378, 100: 1.9839715185235556}
    for df, value in known.items():
        assert t_quantile_975(df) == pytest.approx(value, abs=1e-9)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile_975(0)


@pytest.mark.parametrize("column", ["threshold", "strategy", "test_accuracy", "repeat"])
def test_removal_summary_names_missing_column(curve: pd.DataFrame, column: str) -> None:
    with pytest.raises(ValueError, match=f"curve is missing column.*{column}"):
        removal_summary(curve.drop(columns=column))


# -------------------------------------------------------------------------- removal curve


def test_removal_curve_figure_contents(curve: pd.DataFrame) -> None:
    fig = removal_curve_figure(curve)
    (ax,) = fig.axes
    left, right = ax.get_xlim()
    assert left > right, "x axis should be inverted so that moving right removes more"
    assert "more removed" in ax.get_xlabel()
    assert ax.get_ylabel() == "test accuracy"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(legend) == 2 and any("memorization" in t for t in legend) and any("random" in t for t in legend)
    assert all(t.endswith("mean of 3 models per point") for t in legend)  # 3 repeats per point
    # Plotted means equal the summary means, points ordered by train_fraction.
    summary = removal_summary(curve)
    for line, strategy in zip(ax.get_lines(), ["memorization", "random"]):
        expected = summary[summary["strategy"] == strategy].sort_values("train_fraction")
        np.testing.assert_allclose(line.get_xdata(), expected["train_fraction"])
        np.testing.assert_allclose(line.get_ydata(), expected["mean"])
    # One threshold annotation per memorization point, one band per strategy.
    assert sorted(t.get_text() for t in ax.texts) == ["θ=0.3", "θ=0.5"]
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2
    assert _png_bytes(fig).startswith(PNG_SIGNATURE)


def test_removal_curve_single_repeat_has_no_band(curve: pd.DataFrame) -> None:
    fig = removal_curve_figure(curve[curve["repeat"] == 0])
    (ax,) = fig.axes
    assert not any(isinstance(c, PolyCollection) for c in ax.collections)
    assert len(ax.get_lines()) == 2
    assert all(t.get_text().endswith("mean of 1 model per point") for t in ax.get_legend().get_texts())


def test_removal_curve_states_a_varying_number_of_models(curve: pd.DataFrame) -> None:
    fig = removal_curve_figure(curve.drop(index=0))  # one memorization point lost a repeat
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[0].endswith("mean of 2–3 models per point") and legend[1].endswith("mean of 3 models per point")


# ------------------------------------------------------------------------------ histogram


def test_histogram_counts_non_nan_scores(scores: pd.DataFrame) -> None:
    fig = memorization_histogram(scores, bins=7)
    (ax,) = fig.axes
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 7
    assert sum(heights) == 54  # 60 examples, 6 NaN
    assert "6 NaN dropped" in ax.get_title()
    assert "n = 54" in [t.get_text() for t in ax.texts]
    assert ax.get_xlabel() == "memorization estimate"
    assert ax.get_ylabel() == "training examples"
    assert _png_bytes(fig).startswith(PNG_SIGNATURE)


def test_histogram_without_nan_says_nothing_dropped(scores: pd.DataFrame) -> None:
    fig = memorization_histogram(scores.dropna(), bins=5)
    assert "dropped" not in fig.axes[0].get_title()


def test_histogram_requires_mem_column(scores: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="scores is missing column.*mem"):
        memorization_histogram(scores.drop(columns="mem"))
    with pytest.raises(ValueError, match="DataFrame"):
        memorization_histogram(scores["mem"])  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------- grid


LEVELS = (0.0, 0.25, 0.5, 0.75, 0.9)


@pytest.fixture
def class_scores() -> tuple[np.ndarray, pd.DataFrame]:
    """300 examples of 3 classes with mem spread over [-0.1, 1] (a few NaN), and images whose
    constant pixel value is index / 1000, so that a shown image names its example."""
    rng = np.random.default_rng(4)
    n = 300
    mem = rng.uniform(-0.1, 1.0, n)
    mem[rng.choice(n, 10, replace=False)] = np.nan
    scores = pd.DataFrame({"index": rng.permutation(n), "label": rng.integers(0, 3, n), "mem": mem})
    images = np.broadcast_to((np.arange(n) / 1000.0)[:, None, None, None], (n, 1, 4, 4)).astype(np.float32)
    return images, scores


def _nearest_level(mem: float) -> int:
    """Brute force: the last level is a floor; below it, the nearest of the others."""
    if np.isnan(mem):
        return -1
    if mem >= LEVELS[-1]:
        return len(LEVELS) - 1
    return int(np.argmin([abs(mem - level) for level in LEVELS[:-1]]))


def test_levels_are_nearest_below_the_last_and_a_floor_at_it() -> None:
    mem = np.r_[np.random.default_rng(5).uniform(-0.3, 1.2, 500), np.nan, 0.9, 0.8999]
    expected = [_nearest_level(m) for m in mem]
    assert figures.memorization_levels(mem, LEVELS).tolist() == expected
    with pytest.raises(ValueError, match="increasing"):
        figures.memorization_levels(mem, (0.5, 0.25))
    with pytest.raises(ValueError, match="at least two"):
        figures.memorization_levels(mem, (0.5,))


def _shown(fig: Figure, n_cols: int) -> list[tuple[int, int, int, float]]:
    """(row, column, example index, mem in the title) of every image of the grid."""
    cells = []
    for position, ax in enumerate(fig.axes):
        if ax.images:
            label, mem = ax.get_title().split(" · ")
            index = round(float(np.asarray(ax.images[0].get_array())[0, 0]) * 1000)
            cells.append((position // n_cols, position % n_cols, index, float(mem)))
    return cells


def test_grid_rows_rise_through_the_levels_and_columns_are_classes(class_scores) -> None:
    images, scores = class_scores
    fig = figures.memorization_grid(images, scores, levels=LEVELS, per_class=2, seed=0)
    assert len(fig.axes) == len(LEVELS) * 3 * 2
    by_index = scores.set_index("index")
    shown = _shown(fig, n_cols=6)
    assert len(shown) == len(LEVELS) * 3 * 2  # every level has at least two examples of each class here
    for row, column, index, mem in shown:
        assert by_index.at[index, "label"] == column // 2
        assert _nearest_level(by_index.at[index, "mem"]) == row
        assert mem == pytest.approx(by_index.at[index, "mem"], abs=0.005)
    counts = pd.Series([_nearest_level(m) for m in scores["mem"]]).value_counts()
    first_column = fig.axes[:: 3 * 2]
    assert first_column[1].get_ylabel() == f"mem ≈ 0.25\n({counts[1]:,} examples)"
    assert first_column[-1].get_ylabel() == f"mem ≥ 0.90\n({counts[4]:,} examples)"


def test_a_level_without_an_example_says_so(class_scores) -> None:
    images, scores = class_scores
    scores = scores[~((scores["label"] == 1) & (scores["mem"] >= 0.9))]
    fig = figures.memorization_grid(images, scores, levels=LEVELS)
    empty = fig.axes[4 * 3 + 1]  # last row, class 1
    assert not empty.images and [t.get_text() for t in empty.texts] == [figures.NO_EXAMPLE]
    assert len(_shown(fig, n_cols=3)) == len(LEVELS) * 3 - 1


def test_with_many_classes_the_grid_shows_those_with_most_memorized_examples(class_scores) -> None:
    images, scores = class_scores
    top = scores["mem"] >= 0.9
    scores = scores.assign(label=np.where(top, scores["label"] * 2, scores["label"] * 2 + 1))  # 6 classes
    counts = scores[top]["label"].value_counts()
    expected = sorted(sorted(counts.index, key=lambda label: (-counts[label], label))[:2])  # ties: lower label
    fig = figures.memorization_grid(images, scores, levels=LEVELS, max_classes=2)
    columns = {column: scores.set_index("index").at[index, "label"] for _, column, index, _ in _shown(fig, 2)}
    assert [columns[0], columns[1]] == expected


def test_grid_is_seeded(class_scores) -> None:
    images, scores = class_scores

    def titles(seed: int) -> list[str]:
        return [ax.get_title() for ax in figures.memorization_grid(images, scores, levels=LEVELS, seed=seed).axes]

    assert titles(5) == titles(5)
    assert titles(5) != titles(6)


def test_grid_rgb_with_class_names(class_scores) -> None:
    _, scores = class_scores
    images = np.random.default_rng(0).random((300, 3, 4, 4), dtype=np.float32)
    fig = figures.memorization_grid(images, scores, levels=LEVELS, class_names=["cat", "dog", "owl"])
    image_axes = _image_axes(fig)
    assert {ax.get_title().split(" · ")[0] for ax in image_axes} == {"cat", "dog", "owl"}
    assert image_axes[0].images[0].get_array().shape == (4, 4, 3)  # CHW -> HWC
    assert _png_bytes(fig).startswith(PNG_SIGNATURE)


def test_grid_invalid_inputs(gray_images: np.ndarray, scores: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="ndim=3"):
        memorization_grid(gray_images[:, 0], scores)
    with pytest.raises(ValueError, match="channels"):
        memorization_grid(np.zeros((60, 2, 4, 4)), scores)
    with pytest.raises(ValueError, match="missing column.*label"):
        memorization_grid(gray_images, scores.drop(columns="label"))
    with pytest.raises(ValueError, match=r"scores\['index'\]"):
        memorization_grid(gray_images[:30], scores)
    with pytest.raises(ValueError, match="class_names"):
        memorization_grid(gray_images, scores, class_names=["a", "b"])
    with pytest.raises(ValueError, match="increasing"):
        memorization_grid(gray_images, scores, levels=(0.5, 0.1))


# ------------------------------------------------------------------------------ influence


def test_influence_rows_are_top_training_examples(influence_inputs: dict) -> None:
    fig = influence_figure(**influence_inputs, n_rows=3, per_row=2, class_names=["zero", "one", "two"])
    axes = np.array(fig.axes).reshape(3, 3)
    # Strongest influence per training example: 4 -> 0.9, 2 -> 0.7, 9 -> 0.4, 7 -> 0.2.
    assert [row[0].get_ylabel() for row in axes] == ["#4", "#2", "#9"]
    assert axes[0, 0].get_title() == "train one · mem 0.90"  # label of train 4 is 4 % 3 = 1
    expected_tests = {4: [(1, 0.90), (2, 0.50)], 2: [(5, 0.70), (6, 0.10)], 9: [(7, 0.40)]}
    train = influence_inputs["train_images"]
    test = influence_inputs["test_images"]
    for row, train_idx in zip(axes, [4, 2, 9]):
        np.testing.assert_array_equal(np.asarray(row[0].images[0].get_array()), train[train_idx].transpose(1, 2, 0))
        shown = [ax for ax in row[1:] if ax.images]
        assert len(shown) == len(expected_tests[train_idx])
        for ax, (test_idx, infl) in zip(shown, expected_tests[train_idx]):
            name = ["zero", "one", "two"][test_idx % 3]
            assert ax.get_title() == f"{name} · infl {infl:.2f}"
            np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), test[test_idx].transpose(1, 2, 0))
    assert _png_bytes(fig).startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("columns", ["se", "interval"])
def test_influence_titles_give_each_infl_its_interval(influence_inputs: dict, columns: str) -> None:
    pairs = influence_inputs["pairs"]
    se = np.linspace(0.01, 0.07, len(pairs))
    if columns == "se":  # normal 95%: infl ± 1.959964 se
        lo, hi = pairs["infl"] - 1.959964 * se, pairs["infl"] + 1.959964 * se
        pairs = pairs.assign(infl_se=se)
    else:  # a given interval wins over the standard error
        lo, hi = pairs["infl"] - se, pairs["infl"] + 2 * se
        pairs = pairs.assign(infl_se=1.0, infl_lo=lo, infl_hi=hi)
    fig = influence_figure(**dict(influence_inputs, pairs=pairs), n_rows=1, per_row=3)
    titles = [ax.get_title() for ax in fig.axes[1:]]
    strongest = [1, 2, 0]  # train 4's test examples by infl: 0.9, 0.5, 0.3
    expected = [f"{t % 3} · infl {pairs['infl'][t]:.2f}\n[{lo[t]:.2f}, {hi[t]:.2f}]" for t in strongest]
    assert titles == expected


def test_influence_fewer_training_examples_than_rows(influence_inputs: dict) -> None:
    fig = influence_figure(**influence_inputs, n_rows=10, per_row=4)
    assert len(fig.axes) == 4 * 5  # only 4 distinct training examples
    assert len(_image_axes(fig)) == 4 + 3 + 2 + 1 + 1


def test_influence_empty_pairs_gives_message(influence_inputs: dict) -> None:
    influence_inputs["pairs"] = influence_inputs["pairs"].iloc[:0]
    fig = influence_figure(**influence_inputs)
    assert not _image_axes(fig)
    assert "no pairs above the threshold" in _all_text(fig)
    assert _png_bytes(fig).startswith(PNG_SIGNATURE)


def test_influence_invalid_inputs(influence_inputs: dict) -> None:
    bad = dict(influence_inputs, train_labels=np.arange(9))
    with pytest.raises(ValueError, match="train_labels has length 9"):
        influence_figure(**bad)
    bad = dict(influence_inputs, pairs=influence_inputs["pairs"].drop(columns="infl"))
    with pytest.raises(ValueError, match="pairs is missing column.*infl"):
        influence_figure(**bad)
    bad = dict(influence_inputs, test_images=influence_inputs["test_images"][:5], test_labels=np.arange(5))
    with pytest.raises(ValueError, match=r"pairs\['test_index'\]"):
        influence_figure(**bad)
    bad = dict(influence_inputs, train_images=influence_inputs["train_images"].reshape(10, -1))
    with pytest.raises(ValueError, match="train_images must have 4 dimensions"):
        influence_figure(**bad)


# ---------------------------------------------------------------------------- global state


def test_figures_do_not_touch_pyplot(gray_images, scores, curve, influence_inputs) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    memorization_histogram(scores)
    memorization_grid(gray_images, scores, levels=(0.0, 0.5))
    influence_figure(**influence_inputs)
    removal_curve_figure(curve)
    assert plt.get_fignums() == before
