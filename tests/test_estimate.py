"""Tests for longtail.estimate against plain per-example brute force."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from scipy.stats import binomtest, false_discovery_control, fisher_exact, hypergeom

from longtail.estimate import fisher_greater, influence, influence_matrix, influence_of, memorization, newcombe, q_values
from longtail.estimate.evidence import hypergeom_upper_tail

N_MODELS, N_TRAIN, N_TEST = 40, 30, 20


# --------------------------------------------------------------------------
# brute force: one example at a time, straight from the definitions, with scipy's exact
# test and Wilson interval (not the vectorized code under test)


def _wilson(right: float, n: int) -> tuple[float, float]:
    interval = binomtest(int(round(right)), n).proportion_ci(confidence_level=0.95, method="wilson")
    return interval.low, interval.high


def _contrast(values_in: np.ndarray, values_out: np.ndarray, soft: bool) -> tuple[float, ...]:
    n_in, n_out = len(values_in), len(values_out)
    p_in = float(np.mean(values_in)) if n_in else math.nan
    p_out = float(np.mean(values_out)) if n_out else math.nan
    if n_in == 0 or n_out == 0:
        return math.nan, math.nan, math.nan, math.nan, math.nan, p_in, p_out
    diff = p_in - p_out
    if soft:
        var = lambda v: float(np.var(v, ddof=1)) if len(v) > 1 else 0.0  # noqa: E731
        se = math.sqrt(var(values_in) / n_in + var(values_out) / n_out)
        lo, hi = max(-1.0, diff - 1.959963984540054 * se), min(1.0, diff + 1.959963984540054 * se)
        return diff, se, lo, hi, math.nan, p_in, p_out
    a, c = values_in.sum(), values_out.sum()
    (l1, u1), (l2, u2) = _wilson(a, n_in), _wilson(c, n_out)
    lo = diff - math.sqrt((p_in - l1) ** 2 + (u2 - p_out) ** 2)  # Newcombe (1998), method 10
    hi = diff + math.sqrt((u1 - p_in) ** 2 + (p_out - l2) ** 2)
    p = fisher_exact([[a, n_in - a], [c, n_out - c]], alternative="greater").pvalue
    return diff, (hi - lo) / (2 * 1.959963984540054), lo, hi, p, p_in, p_out


def _by(p: np.ndarray) -> np.ndarray:
    q = np.full(p.shape, np.nan)
    tested = ~np.isnan(p)
    if tested.any():
        q[tested] = false_discovery_control(p[tested], method="by")
    return q


def brute_memorization(masks: np.ndarray, correct: np.ndarray) -> pd.DataFrame:
    soft = correct.dtype != bool
    rows = []
    for i in range(masks.shape[1]):
        seen = masks[:, i]
        values = correct[:, i].astype(float)
        mem, se, lo, hi, p, p_in, p_out = _contrast(values[seen], values[~seen], soft)
        rows.append((mem, se, lo, hi, p, p_in, p_out, int(seen.sum()), int((~seen).sum())))
    columns = ["mem", "mem_se", "mem_lo", "mem_hi", "mem_p", "p_in", "p_out", "n_in", "n_out"]
    frame = pd.DataFrame(rows, columns=columns).astype({"n_in": np.int64, "n_out": np.int64})
    frame.insert(5, "mem_q", _by(frame["mem_p"].to_numpy()))
    return frame


def brute_influence(masks: np.ndarray, test_correct: np.ndarray) -> pd.DataFrame:
    """Every pair; q-values by Benjamini-Yekutieli over the pairs with an estimate whose test
    column is not constant (a constant column admits no test)."""
    soft = test_correct.dtype != bool
    rows = []
    for i in range(masks.shape[1]):
        seen = masks[:, i]
        for z in range(test_correct.shape[1]):
            values = test_correct[:, z].astype(float)
            infl, se, lo, hi, p, _, _ = _contrast(values[seen], values[~seen], soft)
            rows.append((i, z, infl, se, lo, hi, p, values.min() == values.max()))
    columns = ["train_index", "test_index", "infl", "infl_se", "infl_lo", "infl_hi", "p_value", "constant"]
    frame = pd.DataFrame(rows, columns=columns).astype({"train_index": np.int64, "test_index": np.int64})
    p = frame["p_value"].to_numpy().copy()
    p[frame["constant"].to_numpy()] = np.nan
    frame["q_value"] = _by(p)
    return frame.drop(columns="constant")


def brute_select(pairs: pd.DataFrame, threshold: float | None, top_k: int | None) -> pd.DataFrame:
    chosen: set[tuple[int, int]] = set()
    for row in pairs.itertuples():
        if threshold is not None and row.infl >= threshold:  # NaN compares False
            chosen.add((row.train_index, row.test_index))
    if top_k is not None:
        for z in range(int(pairs.test_index.max()) + 1):
            column = [r for r in pairs.itertuples() if r.test_index == z and r.infl > 0]
            column.sort(key=lambda r: (-r.infl, r.train_index))
            chosen.update((r.train_index, r.test_index) for r in column[:top_k])
    keep = [(r.train_index, r.test_index) in chosen for r in pairs.itertuples()]
    selected = pairs[keep].copy()
    selected["neg"] = -selected["infl"]
    selected = selected.sort_values(["test_index", "neg", "train_index"], kind="stable")
    return selected.drop(columns="neg").reset_index(drop=True)


# --------------------------------------------------------------------------
# fixtures


def _random_case(seed: int, soft: bool, n_models: int = N_MODELS):
    rng = np.random.default_rng(seed)
    masks = rng.random((n_models, N_TRAIN)) < 0.6
    masks[:, 0] = True  # in every model
    masks[:, 1] = False  # in no model
    correct = rng.random((n_models, N_TRAIN))
    test_correct = rng.random((n_models, N_TEST))
    # correlate some test examples with membership of some training examples
    test_correct[:, :5] = np.clip(test_correct[:, :5] * 0.6 + 0.4 * masks[:, 2:7], 0, 1)
    if not soft:
        correct, test_correct = correct < 0.5, test_correct < 0.5
    return masks, correct, test_correct


@pytest.fixture(params=[False, True], ids=["bool", "soft"])
def case(request):
    return _random_case(seed=7, soft=request.param)


def _tolerance(values: np.ndarray) -> float:
    return 1e-12 if values.dtype == bool else 1e-10


# --------------------------------------------------------------------------
# memorization


def test_memorization_matches_brute_force(case):
    masks, correct, _ = case
    got = memorization(masks, correct)
    pd.testing.assert_frame_equal(
        got, brute_memorization(masks, correct), check_exact=False, atol=_tolerance(correct), rtol=0
    )
    assert isinstance(got.index, pd.RangeIndex)


def test_memorization_known_answers():
    rng = np.random.default_rng(0)
    masks = rng.random((50, 6)) < 0.5
    masks[:2], masks[2:4] = True, False  # every example has models in and out
    fully_memorized = masks.copy()  # correct iff trained on it
    got = memorization(masks, fully_memorized)
    assert (got["mem"] == 1.0).all() and (got["mem_hi"] == 1.0).all()
    # never falsely certain: the Wald form gave se 0 here
    assert (got["mem_se"] > 0).all() and (got["mem_lo"] < 1.0).all()

    # membership and correctness balanced 2x2: p_in = p_out = 1/2 exactly
    masks = np.array([[1], [1], [0], [0]] * 3, dtype=bool)
    correct = np.array([[1], [0], [1], [0]] * 3, dtype=bool)
    got = memorization(masks, correct)
    assert got.loc[0, "mem"] == 0.0 and got.loc[0, "p_in"] == 0.5 and got.loc[0, "p_out"] == 0.5


def test_memorization_nan_where_undefined(case):
    masks, correct, _ = case
    got = memorization(masks, correct)
    always, never = got.loc[0], got.loc[1]
    assert always[["mem", "mem_se", "p_out"]].isna().all() and always["n_out"] == 0
    assert not math.isnan(always["p_in"])
    assert never[["mem", "mem_se", "p_in"]].isna().all() and never["n_in"] == 0
    assert not math.isnan(never["p_out"])
    assert got["mem"].iloc[2:].notna().all()


# --------------------------------------------------------------------------
# influence


def test_influence_all_pairs_matches_brute_force(case):
    masks, _, test_correct = case
    got = influence(masks, test_correct, all_pairs=True)
    expected = brute_influence(masks, test_correct)
    pd.testing.assert_frame_equal(
        got, expected, check_exact=False, atol=_tolerance(test_correct), rtol=0
    )
    assert got.loc[got.train_index < 2, "infl"].isna().all()
    assert got.attrs["n_tests"] == int(expected["q_value"].notna().sum())


def test_all_pairs_must_be_asked_for():
    masks, _, test_correct = _random_case(seed=1, soft=False)
    with pytest.raises(ValueError, match=r"all_pairs=True .* \(30 x 20\)"):
        influence(masks, test_correct)
    with pytest.raises(ValueError, match="all_pairs=True"):
        influence(masks, test_correct, top_k=2, all_pairs=True)


@pytest.mark.parametrize(
    ("threshold", "top_k"), [(0.2, None), (None, 1), (None, 3), (0.1, 2), (0.01, None)]
)
def test_influence_selection_matches_brute_force(case, threshold, top_k):
    masks, _, test_correct = case
    got = influence(masks, test_correct, threshold=threshold, top_k=top_k)
    every = brute_influence(masks, test_correct)
    expected = brute_select(every, threshold, top_k)
    assert len(got) > 0
    assert (got["infl"] > 0).all()
    _assert_selected_match(got, expected, every, threshold, _tolerance(test_correct))


def _assert_selected_match(got, expected, every, threshold, atol):
    """Equal to brute force; q-values: Benjamini-Yekutieli over every test made, with p = 1
    for the tests neither selected nor at infl >= threshold / 2 (as documented), and never
    below the q-values from every p-value (conservative)."""
    evidence = ["q_value"]
    pd.testing.assert_frame_equal(
        got.drop(columns=evidence), expected.drop(columns=evidence), check_exact=False, atol=atol, rtol=0
    )
    key = ["train_index", "test_index"]
    selected = every.set_index(key).index.isin(expected.set_index(key).index)
    counted = selected | (every["infl"] >= (threshold if threshold is not None else np.inf) / 2)
    p = every["p_value"].where(counted, 1.0).where(every["q_value"].notna()).to_numpy()
    rule = every.assign(rule=_by(p)).set_index(key).loc[list(map(tuple, got[key].to_numpy()))]
    np.testing.assert_allclose(got["q_value"], rule["rule"], rtol=1e-9, equal_nan=True)
    assert (got["q_value"].fillna(1) >= rule["q_value"].fillna(1).to_numpy() - 1e-12).all()


@pytest.mark.parametrize("max_block_mb", [256.0, 1e-4])
def test_top_k_breaks_ties_by_lower_train_index(max_block_mb):
    # 6 models: influence takes few distinct values, so ties are everywhere
    masks, _, test_correct = _random_case(seed=3, soft=False, n_models=6)
    got = influence(masks, test_correct, top_k=4, max_block_mb=max_block_mb)
    pairs = brute_influence(masks, test_correct)
    defined = pairs.dropna()
    ties = defined.duplicated(["test_index", "infl"], keep=False)
    assert ties.mean() > 0.5  # the case really exercises tie-breaking
    expected = brute_select(pairs, None, 4)
    _assert_selected_match(got, expected, pairs, None, 1e-12)
    assert got["test_index"].value_counts().max() == 4  # exactly k, whatever the ties


def test_top_k_returns_fewer_when_fewer_defined():
    masks = np.zeros((5, 6), dtype=bool)
    masks[:2, 2] = True  # only training example 2 has models in and out
    test_correct = np.eye(5, 2, dtype=bool)
    got = influence(masks, test_correct, top_k=3)
    assert got["train_index"].tolist() == [2, 2]
    assert got["test_index"].tolist() == [0, 1]


def test_threshold_is_inclusive():
    masks = np.array([[1], [1], [0], [0]], dtype=bool)
    test_correct = np.array([[1, 1], [1, 0], [0, 0], [0, 0]], dtype=bool)  # infl 1.0 and 0.5
    assert influence(masks, test_correct, threshold=1.0)["test_index"].tolist() == [0]
    got = influence(masks, test_correct, threshold=0.5)
    assert got["infl"].tolist() == [1.0, 0.5]


def test_union_of_threshold_and_top_k(case):
    masks, _, test_correct = case
    by_threshold = influence(masks, test_correct, threshold=0.15)
    by_top_k = influence(masks, test_correct, top_k=2)
    both = influence(masks, test_correct, threshold=0.15, top_k=2)
    key = ["train_index", "test_index"]
    union = pd.concat([by_threshold, by_top_k]).drop_duplicates(key)
    assert not both.duplicated(key).any()
    assert set(map(tuple, both[key].to_numpy())) == set(map(tuple, union[key].to_numpy()))
    assert len(both) < len(by_threshold) + len(by_top_k)  # the sets overlap
    order = both.assign(neg=-both["infl"]).sort_values(["test_index", "neg", "train_index"])
    assert order.index.tolist() == list(range(len(both)))


@pytest.mark.parametrize(("threshold", "top_k"), [(0.05, None), (0.1, 2), (None, 5)])
def test_tiny_blocks_match_one_block(case, threshold, top_k):
    masks, _, test_correct = case
    one = influence(masks, test_correct, threshold=threshold, top_k=top_k, max_block_mb=256.0)
    many = influence(masks, test_correct, threshold=threshold, top_k=top_k, max_block_mb=1e-4)
    # bool counts are exact whatever the blocking; BLAS may sum soft scores in another order
    pd.testing.assert_frame_equal(
        one, many, check_exact=test_correct.dtype == bool, atol=1e-12, rtol=0
    )


def test_influence_matrix_matches_all_pairs(case, tmp_path):
    masks, _, test_correct = case
    pairs = influence(masks, test_correct, all_pairs=True)
    expected = pairs["infl"].to_numpy().reshape(N_TRAIN, N_TEST)
    # the same blocks, but the matrix and the table may reach BLAS by different paths, which can
    # sum soft scores in another order (seen with numpy 2.5.2: 1e-15 apart)
    np.testing.assert_allclose(influence_matrix(masks, test_correct), expected, atol=_tolerance(test_correct), rtol=0)
    tiny_blocks = influence_matrix(masks, test_correct, max_block_mb=1e-4)
    np.testing.assert_allclose(tiny_blocks, expected, atol=_tolerance(test_correct), rtol=0)

    out = np.lib.format.open_memmap(
        tmp_path / "infl.npy", mode="w+", dtype=np.float16, shape=(N_TRAIN, N_TEST)
    )
    assert influence_matrix(masks, test_correct, out=out, max_block_mb=1e-4) is out
    np.testing.assert_allclose(out.astype(float), expected, atol=1e-3, equal_nan=True)


# --------------------------------------------------------------------------
# validation


def _valid():
    masks, correct, test_correct = _random_case(seed=1, soft=False)
    return masks, correct, test_correct


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m, c, t: memorization(m.astype(int), c), r"masks must be a 2-D bool array"),
        (lambda m, c, t: memorization(m[0], c), r"masks must be a 2-D bool array"),
        (
            lambda m, c, t: memorization(m, c[:, :5]),
            r"correct has 5 columns .*expected shape \(40, 30\)",
        ),
        (lambda m, c, t: memorization(m, c[:3]), r"correct has 3 rows but masks has 40"),
        (
            lambda m, c, t: memorization(m, c * 2.0),
            r"correct has values in \[0.0, 2.0\]; expected .*\[0, 1\]",
        ),
        (lambda m, c, t: memorization(m, np.where(c, np.nan, 0.5)), r"correct contains NaN"),
        (
            lambda m, c, t: memorization(m, c.astype(str)),
            r"correct must have a bool, integer or float dtype",
        ),
        (
            lambda m, c, t: influence(m, t[:12]),
            r"test_correct has 12 rows but masks has 40 \(n_models\); "
            r"expected shape \(40, n_test\)",
        ),
        (lambda m, c, t: influence(m, t[0]), r"test_correct must be a 2-D array"),
        (lambda m, c, t: influence(m, t - 1.0), r"test_correct has values in \[-1.0, 0.0\]"),
        (lambda m, c, t: influence(m, t, threshold=1.5), r"threshold must be a number in \(0, 1\]"),
        (lambda m, c, t: influence(m, t, threshold=math.nan), r"threshold must be a number in"),
        (lambda m, c, t: influence(m, t, top_k=0), r"top_k must be an integer >= 1"),
        (lambda m, c, t: influence(m, t, top_k=2.5), r"top_k must be an integer >= 1"),
        (lambda m, c, t: influence(m, t, max_block_mb=0), r"max_block_mb must be a positive"),
        (lambda m, c, t: influence_matrix(m, t[:12]), r"test_correct has 12 rows"),
        (
            lambda m, c, t: influence_matrix(m, t, out=np.empty((3, 3))),
            r"out has shape \(3, 3\); expected",
        ),
    ],
)
def test_invalid_arguments_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call(*_valid())


def test_integer_zero_one_inputs_are_accepted_as_counts():
    masks, correct, test_correct = _valid()
    pd.testing.assert_frame_equal(
        memorization(masks, correct.astype(np.int8)), memorization(masks, correct)
    )
    pd.testing.assert_frame_equal(
        influence(masks, test_correct.astype(int), top_k=2), influence(masks, test_correct, top_k=2)
    )


# --------------------------------------------------------------------------
# evidence: exact tests and q-values against scipy, intervals by simulation


def test_hypergeometric_tail_matches_scipy_everywhere_on_small_tables():
    m, k, n, x = (a.ravel() for a in np.meshgrid(*[np.arange(13)] * 4, indexing="ij"))
    valid = (k <= m) & (n <= m) & (m >= 1)  # scipy leaves an empty population undefined
    m, k, n, x = m[valid], k[valid], n[valid], x[valid]
    np.testing.assert_allclose(hypergeom_upper_tail(x, n, k, m), hypergeom.sf(x - 1, m, k, n), rtol=1e-10, atol=1e-15)


def test_fisher_p_values_match_scipys_exact_test():
    rng = np.random.default_rng(0)
    n_in, n_out = rng.integers(1, 60, 300), rng.integers(1, 30, 300)
    a, c = rng.binomial(n_in, 0.8), rng.binomial(n_out, 0.4)
    got = fisher_greater(in_right=a, n_in=n_in, total_right=a + c, n_out=n_out)
    expected = [fisher_exact([[a_, n - a_], [c_, o - c_]], alternative="greater").pvalue for a_, n, c_, o in zip(a, n_in, c, n_out)]
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert np.isnan(fisher_greater(in_right=np.array([1]), n_in=np.array([3]), total_right=np.array([1]), n_out=np.array([0])))[0]
    with pytest.raises(TypeError, match="positional"):
        fisher_greater(a, n_in, a + c, n_out)  # its third argument is not newcombe's out_right


@pytest.mark.parametrize("models", [1250, 2000, 4000])
def test_p_values_far_below_the_mean_are_about_one_not_zero(models):
    """At ratio 0.7, in-models right once and out-models all but once: the in-group's count
    lies far below the hypergeometric mean, where pmf(x) underflows to 0; the tail is ≈ 1
    (summed upwards from pmf(x), it was 0, and ranked first in Benjamini–Yekutieli)."""
    n_in = int(0.7 * models)
    n_out = models - n_in
    a, c = np.array([1, 0, n_in // 10]), np.array([n_out - 1, n_out, n_out - 1])
    got = fisher_greater(in_right=a, n_in=np.full(3, n_in), total_right=a + c, n_out=np.full(3, n_out))
    expected = [fisher_exact([[a_, n_in - a_], [c_, n_out - c_]], alternative="greater").pvalue for a_, c_ in zip(a, c)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(got, hypergeom.sf(a - 1, models, a + c, n_in), rtol=1e-12)
    assert got.min() > 0.99


def test_influence_of_a_pair_far_below_the_mean_has_p_about_one():
    """The same table reached through the public estimators: a training example the in-models
    get right once and the out-models all but once, among 1,250 models (ratio 0.7)."""
    masks = np.zeros((1250, 2), dtype=bool)
    masks[:875, 0] = True
    masks[::2, 1] = True
    test_correct = np.ones((1250, 1), dtype=bool)
    test_correct[1:876, 0] = False
    test_correct[-1, 0] = False
    pair = influence_of(masks, test_correct, np.array([0]), np.array([0]))
    every = influence(masks, test_correct, all_pairs=True)
    expected = fisher_exact([[1, 874], [374, 1]], alternative="greater").pvalue
    assert pair["p_value"].iloc[0] == pytest.approx(expected, rel=1e-12) and expected > 0.99
    assert every["p_value"].iloc[0] == pytest.approx(expected, rel=1e-12)
    assert every["q_value"].iloc[0] >= every["q_value"].iloc[1]  # the false 0 ranked first


def test_q_values_count_the_tests_not_given_as_p_equal_one():
    rng = np.random.default_rng(1)
    p = np.r_[rng.uniform(0, 1e-3, 20), rng.uniform(0, 1, 30)]
    full = np.r_[p, np.ones(450)]
    np.testing.assert_allclose(q_values(p, n_tests=500), false_discovery_control(full, method="by")[:50], rtol=1e-12)
    np.testing.assert_allclose(q_values(p), false_discovery_control(p, method="by"), rtol=1e-12)
    assert np.isnan(q_values(np.array([np.nan, 0.01])))[0]
    with pytest.raises(ValueError, match="n_tests=1 is smaller than the 2 p-values"):
        q_values(np.array([0.1, 0.2]), n_tests=1)


# (p_in, p_out, n_in, n_out): near 0 and 1, few models, as a 20-model study has
COVERAGE_CASES = [(0.98, 0.5, 14, 6), (1.0, 0.9, 14, 6), (0.5, 0.5, 35, 15), (0.6, 0.3, 8, 4), (0.99, 0.99, 350, 150)]


@pytest.mark.parametrize(("p_in", "p_out", "n_in", "n_out"), COVERAGE_CASES)
def test_intervals_cover_and_tests_keep_their_level_by_simulation(p_in, p_out, n_in, n_out):
    """20,000 simulated tables: the 95% Newcombe interval covers p_in - p_out at least 93% of
    the time (its coverage stays near nominal even at 0 and 1, where the Wald form drops to
    0: a Monte Carlo sd of 0.0016 leaves room below Newcombe's own small-sample dips), and
    under H0 (p_in = p_out) the exact test rejects at 5% no more than 5% + 3 Monte Carlo sd."""
    rng = np.random.default_rng(0)
    reps = 20_000
    a, c = rng.binomial(n_in, p_in, reps), rng.binomial(n_out, p_out, reps)
    lo, hi = newcombe(a, np.full(reps, n_in), c, np.full(reps, n_out))
    diff = p_in - p_out
    assert np.mean((lo <= diff + 1e-12) & (diff - 1e-12 <= hi)) >= 0.93
    if p_in == p_out:
        p = fisher_greater(in_right=a, n_in=np.full(reps, n_in), total_right=a + c, n_out=np.full(reps, n_out))
        assert np.mean(p <= 0.05) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)


def test_memorization_evidence_matches_brute_force_on_every_example(case):
    masks, correct, _ = case
    got = memorization(masks, correct)
    if correct.dtype == bool:
        assert got["mem_p"].iloc[2:].notna().all() and got["mem_q"].iloc[2:].between(0, 1).all()
    else:
        assert got["mem_p"].isna().all() and got["mem_q"].isna().all()  # soft scores get no test
    assert ((got["mem_lo"] <= got["mem"]) & (got["mem"] <= got["mem_hi"])).iloc[2:].all()
