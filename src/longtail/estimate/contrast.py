"""Input checks and the one contrast every estimate is: ``p_in − p_out`` with its evidence."""

from __future__ import annotations

from collections.abc import Iterator
from numbers import Integral, Real

import numpy as np

from longtail.estimate.evidence import Z_95, fisher_greater, newcombe

MB = 2**20
DEFAULT_BLOCK_MB = 256.0


def check_masks(masks: np.ndarray) -> np.ndarray:
    if not isinstance(masks, np.ndarray) or masks.dtype != bool or masks.ndim != 2:
        got = f"dtype {masks.dtype}, shape {masks.shape}" if isinstance(masks, np.ndarray) else type(masks).__name__
        raise ValueError(f"masks must be a 2-D bool array of shape (n_models, n_train); got {got}")
    return masks


def check_scores(name: str, values: np.ndarray, n_models: int, n_cols: int | None) -> np.ndarray:
    """Validate a correctness array: 2-D, ``n_models`` rows, values in [0, 1].

    Integer arrays (0/1) become bool so they take the exact counting path.
    """
    expected = f"({n_models}, {'n_test' if n_cols is None else n_cols})"
    if not isinstance(values, np.ndarray) or values.ndim != 2:
        got = f"shape {values.shape}" if isinstance(values, np.ndarray) else type(values).__name__
        raise ValueError(f"{name} must be a 2-D array of shape {expected}; got {got}")
    if values.dtype != bool and values.dtype.kind not in "iuf":
        raise ValueError(f"{name} must have a bool, integer or float dtype; got {values.dtype}")
    if values.shape[0] != n_models:
        raise ValueError(
            f"{name} has {values.shape[0]} rows but masks has {n_models} (n_models); expected shape {expected}"
        )
    if n_cols is not None and values.shape[1] != n_cols:
        raise ValueError(
            f"{name} has {values.shape[1]} columns but masks has {n_cols} (n_train); expected shape {expected}"
        )
    if values.dtype == bool or values.size == 0:
        return values
    lo, hi = values.min(), values.max()  # min/max propagate NaN, without a temporary
    if np.isnan(lo) or np.isnan(hi):
        raise ValueError(f"{name} contains NaN; expected values in [0, 1]")
    if lo < 0 or hi > 1:
        raise ValueError(f"{name} has values in [{lo}, {hi}]; expected values in [0, 1]")
    return values.astype(bool) if values.dtype.kind in "iu" else values


def check_block_mb(max_block_mb: float) -> None:
    if not isinstance(max_block_mb, Real) or not max_block_mb > 0:
        raise ValueError(f"max_block_mb must be a positive number; got {max_block_mb!r}")


def check_top_k(top_k: int | None) -> None:
    if top_k is not None and (not isinstance(top_k, Integral) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1 or None; got {top_k!r}")


def counts(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n_in = np.count_nonzero(masks, axis=0).astype(np.int64)
    return n_in, masks.shape[0] - n_in


def denominator(n: np.ndarray) -> np.ndarray:
    """Counts as float64 with NaN for 0, so undefined means come out NaN.

    Dividing by NaN rather than 0 also keeps round-off in soft-variant sums
    (``total - in_sum`` = 1e-17 instead of 0) from turning into +-inf.
    """
    return np.where(n > 0, n, np.nan).astype(np.float64)


def means(
    in_sum: np.ndarray,
    total: np.ndarray,
    n_in: np.ndarray,
    n_out: np.ndarray,
    out: tuple[np.ndarray, np.ndarray] | tuple[None, None] = (None, None),
) -> tuple[np.ndarray, np.ndarray]:
    """``p_in = in_sum / n_in`` and ``p_out = (total - in_sum) / n_out`` in float64.

    The one place the means are formed: the blockwise influence scan (writing into ``out``
    buffers) and the final per-pair statistics go through it, so a selected pair's ``infl`` is
    bit-identical to the value it was selected on.
    """
    p_in = np.divide(in_sum, denominator(n_in), out=out[0], dtype=np.float64)
    p_out = np.subtract(total, in_sum, out=out[1], dtype=np.float64)
    p_out /= denominator(n_out)
    return p_in, p_out


def contrast(
    in_sum: np.ndarray,
    total: np.ndarray,
    n_in: np.ndarray,
    n_out: np.ndarray,
    squares: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """``diff = p_in − p_out`` with its 95% interval ``lo``/``hi``, ``se`` and ``p_value``
    (see ``longtail.estimate.evidence``).

    0/1 counts (``squares`` None): Newcombe interval, ``se`` = its half-width / z, one-sided
    Fisher p-value. Soft scores: ``squares`` = (Σ_in x², Σ x²) give the groups' sample
    variances; normal interval with Welch's se (cut to [−1, 1]), no p-value (NaN).
    """
    p_in, p_out = means(in_sum, total, n_in, n_out)
    diff = p_in - p_out
    with np.errstate(invalid="ignore", divide="ignore"):
        if squares is None:
            lo, hi = newcombe(in_sum, n_in, total - in_sum, n_out)
            se = (hi - lo) / (2 * Z_95)
            p_value = fisher_greater(in_right=in_sum, n_in=n_in, total_right=total, n_out=n_out)
        else:
            var_in = _sample_variance(squares[0], in_sum, n_in)
            var_out = _sample_variance(squares[1] - squares[0], total - in_sum, n_out)
            se = np.sqrt(var_in / denominator(n_in) + var_out / denominator(n_out))
            lo, hi = np.clip(diff - Z_95 * se, -1.0, 1.0), np.clip(diff + Z_95 * se, -1.0, 1.0)
            p_value = np.full(np.shape(diff), np.nan)
    undefined = np.isnan(diff)
    for values in (se, lo, hi, p_value):
        values[undefined] = np.nan
    return {"diff": diff, "se": se, "lo": lo, "hi": hi, "p_value": p_value, "p_in": p_in, "p_out": p_out}


def _sample_variance(sum_sq: np.ndarray, sums: np.ndarray, n: np.ndarray) -> np.ndarray:
    """(Σx² − (Σx)²/n) / (n − 1); 0 for a single value (round-off clipped at 0)."""
    n = np.asarray(n, dtype=np.float64)
    spread = np.maximum(sum_sq - sums * sums / np.where(n > 0, n, np.nan), 0.0)
    return np.where(n > 1, spread / np.maximum(n - 1, 1), 0.0)


def spans(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))
