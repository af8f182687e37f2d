"""Torch models and batched training of many small models (no Kedro dependency)."""

from longtail.nets.config import TrainConfig
from longtail.nets.ensemble import EnsembleResult, train_ensemble, train_one_by_one
from longtail.nets.functional import VmappedEnsemble
from longtail.nets.models import ARCHITECTURES, build_model

__all__ = [
    "ARCHITECTURES",
    "EnsembleResult",
    "TrainConfig",
    "VmappedEnsemble",
    "build_model",
    "train_ensemble",
    "train_one_by_one",
]
