"""Does regression adjustment lower the variance of mem? (issue 11, item 5)

The plain estimator of mem(i) is a difference of means over the models with and without i.
Membership is randomized independently across examples (independent scheme), so the
memberships of *other* examples are covariates randomized independently of i's own: Lin's
(2013) regression adjustment, the coefficient on ``in`` of ``correct ~ 1 + in + Zc + in·Zc``
with the covariates Z centred at their mean over all models, estimates the same mem(i),
consistently, with lower variance by the share of the outcome's variance that Z explains
within each arm (``adjusted_difference``: per arm an OLS on [1, Zc], batched over examples
through the normal equations; mem = the difference of the intercepts).

Covariates compared, for each training example i:

* ``knn_same k``: memberships of i's k nearest training examples of its own class (pixel
  space): whether a near duplicate was in plausibly decides whether i is right when it is out;
* ``knn_count k``: how many of those k were in (one covariate, less fitting noise);
* ``oracle m``: the m training examples whose membership correlates most with i's correctness
  among the reference models (500–1,999) without i. Not available to a real study (it looks at
  1,500 other models): a ceiling on what membership covariates can do.

Measured on the study's models 0 … N−1 for N in ``--sizes``, on a fixed set of examples (mem ≥
0.25 by the reference models 500–1,999, the plain estimator): the median standard error, the
models it extrapolates to for a median se of 0.05 (``diagnostics.models_for_se``), the mean
difference from the reference (bias) and the mean squared difference (the honest check of the
variance: the reference's own variance, ``reference_variance``, is common to all estimators).
``*_blocks`` repeat the last two over the disjoint blocks of N models within models 0–499 and
average them (4 blocks of 125, 2 of 250), for less noise.

Where the variance comes from: ``out_variance_share``, the out-models' share of the plain
estimator's variance on the set, and with ``--twin`` (the same subsets and seeds trained again,
e.g. in bf16) ``twin_correlation``: per example, the correlation of its correctness in the
out-models with that in their twins (median and p10/p90); the share of the variance that even
a fixed subset, initialization and batch order cannot reproduce is about 1 minus it.

    python benchmarks/variance.py --trained FP32 \
        --twin BF16 --json variance.json  # folders of benchmarks/replication.py prepare + gpu.sh
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from replication import REFERENCE, REFERENCE_MEM, trained_arrays  # noqa: E402

from longtail.diagnostics import models_for_se  # noqa: E402
from longtail.estimate import memorization  # noqa: E402
from longtail.estimate.evidence import Z_95  # noqa: E402

TARGET_SE = 0.05
SIZES = (125, 250, 500)

Covariates = Callable[[slice], np.ndarray]  # models -> (n_models, n_examples, k) covariates


def adjusted_difference(treated: np.ndarray, outcome: np.ndarray, covariates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lin's regression-adjusted difference in means of ``outcome`` (T, n) between the
    ``treated`` rows and the others, per column, with covariates (T, n, k); k = 0 gives the
    plain difference. Returns the estimate and its standard error: per arm the HC2 sandwich of
    the intercept of an OLS on [1, Z − Z̄] (Z̄ over all T rows), plus the superpopulation term
    (β₁ − β₀)ᵀ S_Z (β₁ − β₀) / T for the estimated Z̄ (Negi & Wooldridge 2021)."""
    n_rows, _, k = covariates.shape
    centred = covariates - covariates.mean(axis=0)
    design = np.concatenate([np.ones(centred.shape[:2] + (1,)), centred], axis=2)  # (T, n, 1 + k)
    y = outcome.astype(np.float64)
    estimate, variance, slopes = [], [], []
    for arm in (treated, ~treated):
        w = arm.astype(np.float64)
        gram = np.einsum("tn,tnp,tnq->npq", w, design, design)
        inverse = np.linalg.pinv(gram, hermitian=True)
        beta = np.einsum("npq,tnq,tn->np", inverse, design, w * y)
        residual = w * (y - np.einsum("tnp,np->tn", design, beta))
        leverage = np.einsum("tnp,npq,tnq->tn", design, inverse, design) * w
        weight = residual**2 / np.maximum(1.0 - leverage, 1e-12)  # HC2
        meat = np.einsum("tn,tnp,tnq->npq", weight, design, design)
        estimate.append(beta[:, 0])
        variance.append(np.einsum("np,npq,nq->n", inverse[:, 0], meat, inverse[:, 0]))
        slopes.append(beta[:, 1:])
    gap = slopes[0] - slopes[1]
    spread = np.einsum("tnp,tnq->npq", centred, centred) / max(n_rows - 1, 1)
    heterogeneity = np.einsum("np,npq,nq->n", gap, spread, gap) / n_rows if k else 0.0
    return estimate[0] - estimate[1], np.sqrt(variance[0] + variance[1] + heterogeneity)


def fixed_set(arrays: dict[str, np.ndarray], reference: pd.DataFrame | None = None) -> np.ndarray:
    """The examples with mem ≥ 0.25 by the reference models (the plain estimator)."""
    if reference is None:
        models = slice(*REFERENCE)
        reference = memorization(arrays["masks"][models], arrays["train_correct"][models])
    return np.flatnonzero(np.nan_to_num(reference["mem"].to_numpy(), nan=-1) >= REFERENCE_MEM)


def nearest_same_class(images: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(n, k) indices of each example's k nearest others of its class (Euclidean, pixels)."""
    flat = images.reshape(len(images), -1).astype(np.float64)
    squared = np.einsum("ij,ij->i", flat, flat)
    distance = squared[:, None] + squared[None, :] - 2.0 * flat @ flat.T
    distance[labels[:, None] != labels[None, :]] = np.inf
    np.fill_diagonal(distance, np.inf)
    return np.argsort(distance, axis=1, kind="stable")[:, :k]


def oracle_partners(masks: np.ndarray, correct: np.ndarray, examples: np.ndarray, m: int) -> np.ndarray:
    """(len(examples), m): the training examples whose membership correlates most (in absolute
    value) with each example's correctness over the models without it."""
    out = ~masks[:, examples]
    y = np.where(out, correct[:, examples], 0).astype(np.float64)
    n_out = out.sum(axis=0)
    member = masks.astype(np.float64)
    sum_m = out.T.astype(np.float64) @ member  # (e, n_train): Σ_out m_j
    sum_my = y.T @ member
    sum_y = y.sum(axis=0)
    cov = sum_my / n_out[:, None] - sum_m / n_out[:, None] * (sum_y / n_out)[:, None]
    var_m = sum_m / n_out[:, None] * (1 - sum_m / n_out[:, None])
    score = np.abs(cov) / np.sqrt(np.maximum(var_m, 1e-12))
    score[np.arange(len(examples)), examples] = -np.inf
    return np.argsort(-score, axis=1, kind="stable")[:, :m]


def membership_covariates(masks: np.ndarray, partners: np.ndarray, count: bool = False) -> Covariates:
    """Covariates of each example: its partners' memberships, or how many of them were in."""

    def build(models: slice) -> np.ndarray:
        z = masks[models][:, partners].astype(np.float64)  # (T, e, k)
        return z.sum(axis=2, keepdims=True) if count else z

    return build


def _summary(mem: np.ndarray, se: np.ndarray, reference: tuple[np.ndarray, np.ndarray], n_models: int) -> dict[str, float]:
    """The convergence measure and its empirical checks against the reference (mem, se): bias,
    mean squared difference, and whether the se formula is honest: the mean se² beside the
    squared difference less the reference's variance, and the share of examples whose
    difference lies within 1.96 · √(se² + se_ref²) (95% if both se are right)."""
    median_se = float(np.nanmedian(se))
    difference = mem - reference[0]
    return {
        "median_se": median_se,
        "models_for_se_0.05": models_for_se(n_models, median_se, TARGET_SE),
        "mean_difference": float(np.nanmean(difference)),
        "mean_squared_difference": float(np.nanmean(difference**2)),
        "mean_se_squared": float(np.nanmean(se**2)),
        "coverage_95": float(np.nanmean(np.abs(difference) <= Z_95 * np.sqrt(se**2 + reference[1] ** 2))),
    }


def variance_sources(reference: pd.DataFrame, examples: np.ndarray) -> dict[str, float]:
    """The out-models' share of Σ var(mem) over ``examples`` at the design's ratio, from the
    reference's p_in, p_out and counts."""
    p_in, p_out = (reference[c].to_numpy()[examples] for c in ("p_in", "p_out"))
    n_in, n_out = (reference[c].to_numpy()[examples] for c in ("n_in", "n_out"))
    var_in, var_out = p_in * (1 - p_in) / n_in, p_out * (1 - p_out) / n_out
    return {
        "median_p_in": float(np.median(p_in)),
        "median_p_out": float(np.median(p_out)),
        "out_variance_share": float(var_out.sum() / (var_in + var_out).sum()),
    }


def twin_correlation(masks: np.ndarray, correct: np.ndarray, twin: np.ndarray, examples: np.ndarray) -> dict[str, float]:
    """Per example, the correlation over its out-models of its correctness with that in the twin
    models (examples constant in either are left out)."""
    out = ~masks[:, examples]
    x, y = (np.where(out, c[:, examples], 0).astype(np.float64) for c in (correct, twin))
    n = out.sum(axis=0)
    mean_x, mean_y = x.sum(axis=0) / n, y.sum(axis=0) / n
    cov = (x * y).sum(axis=0) / n - mean_x * mean_y
    spread = np.sqrt(mean_x * (1 - mean_x) * mean_y * (1 - mean_y))  # 0/1: E[x²] = E[x]
    rho = (cov / np.where(spread > 0, spread, np.nan))[spread > 0]
    return {"examples": int(rho.size), "median": float(np.median(rho)), "p10": float(np.percentile(rho, 10)),
            "p90": float(np.percentile(rho, 90))}


def compare(arrays: dict[str, np.ndarray], images: np.ndarray, sizes: tuple[int, ...]) -> dict:
    masks, correct = arrays["masks"], arrays["train_correct"]
    reference_models = slice(*REFERENCE)
    reference = memorization(masks[reference_models], correct[reference_models])
    examples = fixed_set(arrays, reference)
    ref_mem = (reference["mem"].to_numpy()[examples], reference["mem_se"].to_numpy()[examples])
    neighbours = nearest_same_class(images, arrays["train_labels"], 10)[examples]
    oracle = oracle_partners(masks[reference_models], correct[reference_models], examples, 10)
    estimators: dict[str, Covariates] = {
        "plain, Welch se (no covariates)": membership_covariates(masks, np.zeros((len(examples), 0), dtype=np.int64)),
        **{f"knn_same {k}": membership_covariates(masks, neighbours[:, :k]) for k in (1, 3, 10)},
        "knn_count 10": membership_covariates(masks, neighbours, count=True),
        **{f"oracle {m}": membership_covariates(masks, oracle[:, :m]) for m in (3, 10)},
    }
    result: dict = {
        "examples": len(examples),
        "reference_models": list(REFERENCE),
        "reference_variance": float(np.nanmean(reference["mem_se"].to_numpy()[examples] ** 2)),
        **variance_sources(reference, examples),
    }
    for n in sizes:
        row: dict = {}
        plain = memorization(masks[:n], correct[:n])
        row["plain, Newcombe se (the project's mem_se)"] = _summary(
            plain["mem"].to_numpy()[examples], plain["mem_se"].to_numpy()[examples], ref_mem, n
        )
        for name, covariates in estimators.items():
            blocks = [slice(start, start + n) for start in range(0, REFERENCE[0] - n + 1, n)]
            fits = [adjusted_difference(masks[b][:, examples], correct[b][:, examples], covariates(b)) for b in blocks]
            summary = _summary(*fits[0], ref_mem, n)
            per_block = [_summary(mem, se, ref_mem, n) for mem, se in fits]
            summary["blocks"] = len(blocks)
            for key in ("mean_difference", "mean_squared_difference", "mean_se_squared", "coverage_95"):
                summary[f"{key}_blocks"] = float(np.mean([s[key] for s in per_block]))
            row[name] = summary
        result[str(n)] = row
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trained", type=Path, required=True, help="models trained by benchmarks/train_arrays.py")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--twin", type=Path, help="the same masks and seeds trained again (e.g. bf16)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if max(args.sizes) > REFERENCE[0]:
        raise SystemExit(f"--sizes {args.sizes}: a study of more than {REFERENCE[0]} models shares models with the reference")
    started = time.perf_counter()
    arrays = trained_arrays(args.trained)
    images = np.load(args.trained / "inputs.npz")["train_images"]
    result = {
        "trained": str(args.trained),
        **compare(arrays, images, tuple(args.sizes)),
        **({"twin": str(args.twin), "twin_correlation": twin_correlation(
            arrays["masks"], arrays["train_correct"], trained_arrays(args.twin)["train_correct"], fixed_set(arrays)
        )} if args.twin else {}),
        "seconds": time.perf_counter() - started,
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
