"""The evidence behind each contrast: intervals, exact p-values and false-discovery q-values.

Every estimate here is a difference of two proportions, ``p_in − p_out``, from two disjoint
groups of models (those that saw a training example and those that did not). Membership is
randomized by construction, so given the memberships the two groups are independent samples:

* **Interval** (0/1 correctness): Newcombe's hybrid score interval for a difference of two
  independent proportions (Newcombe 1998, method 10), built from the two Wilson score
  intervals. Unlike the Wald form it never collapses to a point at p = 0 or 1 (mem = 1 with
  n_out = 3 gets a wide interval, not se 0). ``se`` is its half-width / z.
* **Interval** (soft scores, probabilities in [0, 1]): the normal interval with the sample
  variances of the two groups (Welch's standard error). Soft scores get no p-value: no exact
  test is used for them, and they are not used for selection.
* **p-value** (H0: p_in ≤ p_out): the one-sided Fisher exact test on the in/out × right/wrong
  table, i.e. the upper tail of the hypergeometric distribution of the in-group's right count
  given the table's margins. It is exact (valid at every sample size) because membership is
  randomized.
* **q-value**: Benjamini–Yekutieli over all tests made, which controls the false discovery
  rate under any dependence between the tests (pairs sharing a test example or a training
  example are dependent in ways for which Benjamini–Hochberg's positive-dependence condition
  is not established).

Written here rather than taken from a library, for measured or stated reasons: scipy has the
Wilson interval only one proportion at a time (``binomtest(k, n).proportion_ci``) and no
Newcombe interval, and its (vectorized) ``hypergeom.sf`` took 2.1 s per 10⁶ tails where
``hypergeom_upper_tail`` takes 1.3 s (``benchmarks/scoring.py --tails 1000000``: 500 models,
tables of random margins; 2-core AMD EPYC); the q-values are scipy's
``false_discovery_control``. Each is tested against scipy's scalar functions or a brute force.
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma, gammaln
from scipy.stats import false_discovery_control

Z_95 = 1.959963984540054  # two-sided 95%: scipy.stats.norm.ppf(0.975)
_TAIL_RELATIVE = 1e-17  # hypergeometric tail terms below this share of the sum are dropped


def wilson(right: np.ndarray, n: np.ndarray, z: float = Z_95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion ``right / n`` (NaN where n is 0)."""
    n = np.where(n > 0, n, np.nan).astype(np.float64)
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(np.maximum(p * (1 - p) / n + z * z / (4 * n * n), 0.0))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def newcombe(
    in_right: np.ndarray, n_in: np.ndarray, out_right: np.ndarray, n_out: np.ndarray, z: float = Z_95
) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval for ``in_right/n_in − out_right/n_out``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p_in = in_right / np.where(n_in > 0, n_in, np.nan)
        p_out = out_right / np.where(n_out > 0, n_out, np.nan)
        lo_in, hi_in = wilson(in_right, n_in, z)
        lo_out, hi_out = wilson(out_right, n_out, z)
        diff = p_in - p_out
        lower = diff - np.sqrt((p_in - lo_in) ** 2 + (hi_out - p_out) ** 2)
        upper = diff + np.sqrt((hi_in - p_in) ** 2 + (p_out - lo_out) ** 2)
    return lower, upper


def hypergeom_upper_tail(x: np.ndarray, draws: np.ndarray, successes: np.ndarray, population: np.ndarray) -> np.ndarray:
    """P(X ≥ x) for X ~ Hypergeometric(population, successes, draws), elementwise.

    Equal to ``scipy.stats.hypergeom.sf(x - 1, population, successes, draws)`` (tested; 10⁶
    tails in 2.1 s there against 1.3 s here, ``benchmarks/scoring.py --tails``). This sums the
    tail's terms with the pmf's ratio recurrence, vectorized over elements, dropping terms
    below 1e-17 of the sum.
    """
    x, n, k, m = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (x, draws, successes, population)))
    p = np.full(x.shape, np.nan)
    low, high = np.maximum(0, n + k - m), np.minimum(n, k)
    defined = ~(np.isnan(x) | np.isnan(n) | np.isnan(k) | np.isnan(m))
    p[defined & (x <= low)] = 1.0
    p[defined & (x > high)] = 0.0
    todo = np.flatnonzero(defined & (x > low) & (x <= high))
    xs, ns, ks, ms, hs = x[todo], n[todo], k[todo], m[todo], high[todo]
    term = np.exp(_log_choose(ks, xs) + _log_choose(ms - ks, ns - xs) - _log_choose(ms, ns))
    tail = term.copy()
    live = np.arange(todo.size)
    while live.size:
        xi = xs[live]
        ratio = (ks[live] - xi) * (ns[live] - xi) / ((xi + 1) * (ms[live] - ks[live] - ns[live] + xi + 1))
        term[live] *= np.where(xi < hs[live], ratio, 0.0)
        xs[live] += 1
        tail[live] += term[live]
        live = live[term[live] > _TAIL_RELATIVE * tail[live]]
    p[todo] = np.minimum(tail, 1.0)
    return p


def _log_choose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)


def fisher_greater(in_right: np.ndarray, n_in: np.ndarray, total_right: np.ndarray, n_out: np.ndarray) -> np.ndarray:
    """One-sided Fisher exact p-value of H0: p_in ≤ p_out (NaN where n_in or n_out is 0);
    ``scipy.stats.fisher_exact([[a, n_in − a], [c, n_out − c]], alternative="greater")``."""
    n_in, n_out = np.asarray(n_in, dtype=np.float64), np.asarray(n_out, dtype=np.float64)
    defined = (n_in > 0) & (n_out > 0)
    population = np.where(defined, n_in + n_out, np.nan)
    return hypergeom_upper_tail(in_right, n_in, total_right, population)


def q_values(p: np.ndarray, n_tests: int | None = None) -> np.ndarray:
    """Benjamini–Yekutieli q-values of ``p`` among ``n_tests`` tests in all (default: len(p)).

    Tests made but not in ``p`` count as p = 1: since the procedure is monotone in every
    p-value, leaving out p-values that are in fact smaller only makes the q-values larger
    (conservative). NaN p-values (no test) give NaN. Uses ``scipy.stats.false_discovery_control``
    on the given p-values and rescales it to ``n_tests``.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    tested = ~np.isnan(p)
    given = int(tested.sum())
    n_tests = given if n_tests is None else n_tests
    if n_tests < given:
        raise ValueError(f"n_tests={n_tests} is smaller than the {given} p-values given")
    if given:
        harmonic = digamma(n_tests + 1) + np.euler_gamma  # Σ_{i ≤ n_tests} 1/i, BY's factor
        bh = false_discovery_control(p[tested], method="bh")
        q[tested] = np.minimum(1.0, bh * (n_tests / given) * harmonic)
    return q
