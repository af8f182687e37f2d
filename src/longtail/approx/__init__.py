"""Cheap approximations of memorization and influence, measured against the exact subsampled
estimate (Kedro-free). Every method returns one of the two result types of
:mod:`longtail.approx.result`, which carry the method's name, its scores and its cost.

* :func:`train_full_runs`: a few full-data models of the study's configuration, watched as they learn;
* :func:`memorization_proxies`: training-dynamics scores from those runs (``MEMORIZATION_METHODS``);
* :func:`influence_approximations`: same-class influence pairs from them (``INFLUENCE_METHODS``).

docs/approximations.md describes each method and which package computes it.
"""

from longtail.approx.attribution import INFLUENCE_METHODS, AttributionOptions, influence_approximations
from longtail.approx.dynamics import MEMORIZATION_METHODS, ProxyOptions, memorization_proxies
from longtail.approx.result import InfluenceEstimate, MemorizationEstimate
from longtail.approx.runs import Budget, FullRuns, train_full_runs

__all__ = [
    "INFLUENCE_METHODS",
    "MEMORIZATION_METHODS",
    "AttributionOptions",
    "Budget",
    "FullRuns",
    "InfluenceEstimate",
    "MemorizationEstimate",
    "ProxyOptions",
    "influence_approximations",
    "memorization_proxies",
    "train_full_runs",
]
