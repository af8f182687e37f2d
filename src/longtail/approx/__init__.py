"""Cheap approximations of memorization and influence, measured against the exact subsampled
estimate (Kedro-free). Every method returns one of the two result types of
:mod:`longtail.approx.result`, which carry the method's name, its scores and its cost."""

from longtail.approx.result import InfluenceEstimate, MemorizationEstimate

__all__ = ["InfluenceEstimate", "MemorizationEstimate"]
