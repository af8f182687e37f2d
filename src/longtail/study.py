"""Glue between the typed parameters and the torch library, shared by the training and
removal pipelines: build the trainer's configuration, train and evaluate a set of models,
and tabulate them for tracking. Kedro-free."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from longtail.nets.ensemble import EnsembleResult, TrainConfig, train_ensemble
from longtail.params import TrainingParams, parse
from longtail.tracking import model_runs_table


def train_config(training: dict[str, Any], seed: int | None = None) -> TrainConfig:
    """The trainer's configuration from the ``training`` parameters (``seed`` overrides theirs)."""
    params = parse(TrainingParams, training, "training")
    values = params.model_dump()
    shard = values.pop("models_per_shard")
    values["models_per_shard"] = None if shard == "auto" else shard
    if seed is not None:
        values["seed"] = seed
    return TrainConfig(**values)


def n_classes_of(*label_arrays: np.ndarray) -> int:
    """Number of classes: one more than the largest label in any split."""
    return int(max(labels.max() for labels in label_arrays)) + 1


def train_models(
    masks: np.ndarray,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    config: TrainConfig,
    model_ids: np.ndarray,
) -> EnsembleResult:
    """Train one model per mask row and evaluate each on the whole train and test splits."""
    if masks.shape[1] != len(train_labels):
        raise ValueError(
            f"subset_masks has {masks.shape[1]} columns but the training split has "
            f"{len(train_labels)} examples; expected shape (n_models, {len(train_labels)})"
        )
    return train_ensemble(
        train_images,
        train_labels,
        masks,
        model_ids,
        config,
        n_classes_of(train_labels, test_labels),
        eval_sets={"train": (train_images, train_labels), "test": (test_images, test_labels)},
    )


def runs_table(source: str, masks: np.ndarray, model_ids: np.ndarray, result: EnsembleResult, config: TrainConfig) -> pd.DataFrame:
    """The per-model table (params and metrics) that is stored and logged as MLflow child runs."""
    return model_runs_table(
        source,
        model_ids,
        masks,
        result.correct["train"],
        result.correct["test"],
        result.epoch_loss,
        asdict(config),
    )
