"""Property-based tests (Hypothesis) of the estimators and their evidence, on random tables and
studies of 2 to 4,000 models, the extremes among them: every model right, every model wrong,
one in-model or one out-model. The references are scipy's exact test and brute force."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import fisher_exact, hypergeom

from longtail.estimate import fisher_greater, influence, influence_matrix, memorization, newcombe, q_values
from longtail.estimate.contrast import MB

MAX_MODELS = 4000
PROPERTIES = settings(max_examples=150, deadline=None)


def _share(n: int) -> st.SearchStrategy[int]:
    """A count out of n spread evenly (Hypothesis's integers favour small ones)."""
    return st.floats(0, 1).map(lambda share: max(1, round(share * n)))


# 2 to 4,000 models: few, any, and from 1,000 on (where pmfs far below the mean underflow)
model_counts = st.one_of(st.integers(2, 20), st.integers(2, MAX_MODELS), st.integers(1000, MAX_MODELS))


@st.composite
def _count(draw: st.DrawFn, n: int) -> int:
    """A count out of n: 0 and n (all wrong, all right) and counts within 3 of them, where the
    far tails lie, drawn as often as any other."""
    near = st.integers(0, min(n, 3))
    return draw(st.one_of(st.just(0), st.just(n), near, near.map(lambda k: n - k), st.integers(0, n)))


@st.composite
def tables(draw: st.DrawFn) -> tuple[int, int, int, int]:
    """(in_right, n_in, out_right, n_out): 2 to 4,000 models, n_in or n_out of 1 often, half of
    them with the in-group almost all wrong and the out-group almost all right."""
    models = draw(model_counts)
    n_in = draw(st.one_of(st.just(1), st.just(models - 1), st.integers(1, models - 1), _share(models - 1)))
    n_out = models - n_in
    if draw(st.booleans()):
        return draw(_count(n_in)), n_in, draw(_count(n_out)), n_out
    # the in-group far worse than the out-group: the far lower tail, p ≈ 1
    return draw(st.integers(0, min(n_in, 3))), n_in, n_out - draw(st.integers(0, min(n_out, 3))), n_out


def _close(got: np.ndarray, expected: np.ndarray) -> bool:
    """Equal to 1e-9, absolute or relative."""
    difference = np.abs(np.asarray(got, dtype=np.float64) - expected)
    return bool(np.all((difference <= 1e-9) | (difference <= 1e-9 * np.abs(expected))))


def _fisher(in_right: np.ndarray, n_in: int, out_right: np.ndarray, n_out: int) -> np.ndarray:
    return fisher_greater(in_right=in_right, n_in=n_in, total_right=in_right + out_right, n_out=n_out)


@PROPERTIES
@given(tables())
def test_p_values_equal_scipys_exact_test(table):
    in_right, n_in, out_right, n_out = table
    got = _fisher(np.array([in_right]), n_in, np.array([out_right]), n_out)[0]
    table_2x2 = [[in_right, n_in - in_right], [out_right, n_out - out_right]]
    assert _close(got, fisher_exact(table_2x2, alternative="greater").pvalue)
    assert _close(got, hypergeom.sf(in_right - 1, n_in + n_out, in_right + out_right, n_in))


@PROPERTIES
@given(tables())
def test_p_values_fall_as_the_in_group_gets_more_right(table):
    """Every in-group count at once, the out-group's fixed: p never rises (to rounding)."""
    _, n_in, out_right, n_out = table
    in_right = np.arange(n_in + 1)
    p = _fisher(in_right, n_in, np.full(n_in + 1, out_right), n_out)
    assert np.all(np.diff(p) <= 1e-12 * p[:-1])
    assert p[0] == 1.0 and np.all((p >= 0) & (p <= 1))


@PROPERTIES
@given(tables())
def test_intervals_contain_the_estimate_and_lie_in_minus_one_one(table):
    in_right, n_in, out_right, n_out = table
    lo, hi = newcombe(np.array([in_right]), np.array([n_in]), np.array([out_right]), np.array([n_out]))
    diff = in_right / n_in - out_right / n_out
    assert -1.0 <= lo[0] <= diff <= hi[0] <= 1.0


@PROPERTIES
@given(
    st.lists(st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1)), min_size=1, max_size=200),
    st.integers(0, 1000),
)
def test_q_values_are_never_below_their_p_values(p, untested):
    p = np.array(p)
    q = q_values(p, n_tests=p.size + untested)
    assert np.all((q >= p) & (q <= 1))


@st.composite
def studies(
    draw: st.DrawFn, max_train: int = 6, max_test: int | None = 4, soft: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(masks, correct) of 2 to 4,000 models: each training example in a share of the models
    that may be none, one, all but one or all, and each column of ``correct`` right with a
    probability that may be 0 or 1; as many columns as training examples if ``max_test`` is
    None. ``soft``: probabilities in [0, 1] around those rates (0 and 1 among them) instead."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    models = draw(model_counts)
    n_train = draw(st.integers(1, max_train))
    n_test = n_train if max_test is None else draw(st.integers(1, max_test))
    masks = np.empty((models, n_train), dtype=bool)
    for column in range(n_train):
        n_in = draw(st.one_of(st.just(1), st.just(models - 1), st.integers(0, models), _share(models)))
        masks[:, column] = rng.permutation(models) < n_in
    right = draw(st.lists(st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1)), min_size=n_test, max_size=n_test))
    if soft:
        return masks, np.clip(rng.normal(right, 0.4, (models, n_test)), 0.0, 1.0)
    return masks, rng.random((models, n_test)) < np.array(right)


@PROPERTIES
@given(studies(max_test=None, soft=True))
def test_soft_score_intervals_contain_the_estimate_and_lie_in_minus_one_one(study):
    masks, probabilities = study
    got = memorization(masks, probabilities).dropna(subset=["mem_lo"])
    assert got["mem_p"].isna().all()  # soft scores get no test
    assert ((-1 <= got["mem_lo"]) & (got["mem_lo"] <= got["mem"]) & (got["mem"] <= got["mem_hi"]) & (got["mem_hi"] <= 1)).all()


def _brute_influence(masks: np.ndarray, correct: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        p_in = (masks.T.astype(float) @ correct) / masks.sum(axis=0)[:, None]
        p_out = ((~masks).T.astype(float) @ correct) / (~masks).sum(axis=0)[:, None]
    return p_in - p_out


@PROPERTIES
@given(studies(max_test=None))
def test_memorization_evidence_equals_scipy_on_every_example(study):
    masks, correct = study
    got = memorization(masks, correct)
    n_in, n_out = masks.sum(axis=0), (~masks).sum(axis=0)
    in_right, out_right = (masks & correct).sum(axis=0), (~masks & correct).sum(axis=0)
    defined = (n_in > 0) & (n_out > 0)
    assert got["mem_p"].isna().to_numpy().tolist() == (~defined).tolist()
    for j in np.flatnonzero(defined):
        table_2x2 = [[in_right[j], n_in[j] - in_right[j]], [out_right[j], n_out[j] - out_right[j]]]
        assert _close(got["mem_p"][j], fisher_exact(table_2x2, alternative="greater").pvalue)
    mem, lo, hi = (got[c].to_numpy()[defined] for c in ("mem", "mem_lo", "mem_hi"))
    np.testing.assert_allclose(mem, (in_right / np.maximum(n_in, 1) - out_right / np.maximum(n_out, 1))[defined])
    assert np.all((-1 <= lo) & (lo <= mem) & (mem <= hi) & (hi <= 1))
    assert np.all(got["mem_q"].to_numpy()[defined] >= got["mem_p"].to_numpy()[defined])


@PROPERTIES
@given(studies(max_train=12), st.integers(1, 12))
def test_influence_from_blocks_equals_the_whole_matrix(study, rows):
    """A block budget of about ``rows`` training examples (from one to all): the same matrix as
    brute force over the whole one, and the same pairs, p-values and q-values."""
    masks, correct = study
    n_models, n_test = correct.shape
    block_mb = rows * (n_test * 23 + n_models * 4) / MB  # what _scan counts per training example
    expected = _brute_influence(masks, correct)
    np.testing.assert_allclose(influence_matrix(masks, correct, max_block_mb=block_mb), expected, rtol=1e-6, atol=1e-6)
    whole = influence(masks, correct, all_pairs=True, max_block_mb=1e6)
    blocks = influence(masks, correct, all_pairs=True, max_block_mb=block_mb)
    assert _frames_equal(blocks, whole)
    top = dict(threshold=0.05, top_k=2)
    assert _frames_equal(influence(masks, correct, **top, max_block_mb=block_mb), influence(masks, correct, **top))


def _frames_equal(a, b) -> bool:
    return a.shape == b.shape and bool(np.allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9, atol=1e-12, equal_nan=True))
