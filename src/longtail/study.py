"""Glue between the typed parameters and the torch library, shared by the training and
removal pipelines: the trainer's configuration, the experiment's identity in the shard
store, and per-model tables for tracking. Kedro-free."""

from __future__ import annotations

from dataclasses import Field, asdict, fields
from typing import Any

import numpy as np
import pandas as pd

from longtail.executors import TrainingData
from longtail.errors import UserFacingError
from longtail.nets.config import TrainConfig, resolve_precision
from longtail.nets.models import custom_model_signature
from longtail.params import SamplingParams, TrainingParams
from longtail.shards import fingerprint
from longtail.tracking import model_runs_table

# Bump whenever the trainer computes different numbers for the same identity (a new init, loss,
# kernel path, evaluation precision...) or a shard holds other arrays: old shards then land in
# another store folder instead of being mixed with new ones (the training node names such
# folders, ShardStore.superseded). tests/nets/test_reference.py pins it to reference outputs.
# 3: shards also hold train_margin and test_margin (the same models as format 2 otherwise).
STORE_FORMAT = 3


def train_config(params: TrainingParams, seed: int | None = None) -> TrainConfig:
    """The trainer's configuration from the ``training`` parameters, which share its settings'
    names (``seed`` overrides theirs); only ``auto`` values are resolved here."""
    shared = {f.name: getattr(params, f.name) for f in fields(TrainConfig) if f.name in TrainingParams.model_fields}
    return TrainConfig(
        **shared
        | {
            "seed": params.seed if seed is None else seed,
            "precision": resolve_precision(params.precision, params.device, params.model),
            "models_in_memory": None if params.models_in_memory == "auto" else params.models_in_memory,
        }
    )


def training_data(
    train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray
) -> TrainingData:
    """The splits, with the number of classes (one more than the largest label in either)."""
    n_classes = int(max(train_labels.max(), test_labels.max())) + 1
    return TrainingData(train_images, train_labels, test_images, test_labels, n_classes)


def experiment_identity(data: TrainingData, config: TrainConfig, sampling: SamplingParams) -> dict[str, Any]:
    """What a stored shard's results depend on: the data, the subsets' distribution and the
    model and its training (not the device or how models are grouped into shards)."""
    return {
        "format": STORE_FORMAT,
        "data": fingerprint(data.train_images, data.train_labels, data.test_images, data.test_labels),
        "sampling": sampling.identity(),
        "training": {**model_identity(config), **custom_model_signature(config.model, data.train_images.shape[1:], data.n_classes)},
    }


def model_identity(config: TrainConfig) -> dict[str, Any]:
    """The settings a trained model's numbers depend on: architecture, optimisation, seed and
    resolved precision; not where or how it was computed, nor settings its architecture
    ignores (``hidden_sizes`` shape only the mlp)."""
    identity = {f.name: getattr(config, f.name) for f in fields(config) if _identifies(f, getattr(config, f.name))}
    if config.model != "mlp":
        del identity["hidden_sizes"]
    return identity


def _identifies(setting: Field, value: Any) -> bool:
    identity = setting.metadata.get("identity", True)
    return identity is True or (identity == "when_set" and value != setting.default)


def models_table(
    source: str, model_ids: np.ndarray, masks: np.ndarray, arrays: dict[str, np.ndarray], config: TrainConfig
) -> pd.DataFrame:
    """One row per trained model: its params and metrics (see ``longtail.tracking``)."""
    return model_runs_table(
        source, model_ids, masks, arrays["train_correct"], arrays["test_correct"], arrays["epoch_loss"], asdict(config)
    )


#: The training results whose provenance ``training_provenance`` records, beside the masks.
TRAINING_RESULTS = ("train_correct", "train_true_prob", "train_margin", "test_correct", "test_true_prob", "test_margin")
PROVENANCE_FORMAT = 1


class MismatchedInputs(UserFacingError, ValueError):
    """Subset masks and training results that were not produced together."""


def training_provenance(masks: np.ndarray, experiment: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """What the training results were computed from (JSON-safe): the fingerprints of the
    subset masks and of each result array, the shard store's experiment id and the number of
    models."""
    return {
        "format": PROVENANCE_FORMAT,
        "experiment": experiment,
        "n_models": int(len(masks)),
        "fingerprints": {"subset_masks": fingerprint(masks), **{name: fingerprint(arrays[name]) for name in TRAINING_RESULTS}},
    }


def mismatched_inputs(fingerprints: dict[str, str], provenance: dict[str, Any]) -> list[str]:
    """The names among ``fingerprints`` (of subset masks and training results, ``fingerprint``
    of their arrays) whose content is not the one ``provenance`` recorded."""
    recorded = provenance.get("fingerprints", {})
    return [name for name, digest in fingerprints.items() if recorded.get(name) != digest]
