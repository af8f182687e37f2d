"""The trainer's settings: :class:`TrainConfig`, the one definition of each training setting
(which of them change a model's numbers is marked on its field), and the device and CPU
cores it resolves to."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from longtail.choices import PRECISIONS, SCHEDULES
from longtail.nets.models import check_model

#: Marks a setting that changes how models are computed, not what they are: shards trained
#: under different values of it are interchangeable (``longtail.study.model_identity``).
EXECUTION_ONLY = {"identity": False}


def _execution_only(default: object) -> object:
    return field(default=default, metadata=EXECUTION_ONLY)


@dataclass(frozen=True)
class TrainConfig:
    """Every trainer setting, the one definition of each: the ``training`` parameters
    (``longtail.params.TrainingParams``) and the store's experiment identity derive from it."""

    model: str = "mlp"  # one of ARCHITECTURES, or a factory's import path 'package.module:factory' (docs/models.md)
    hidden_sizes: tuple[int, ...] = (512, 256)  # mlp only: its hidden layers' widths
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "constant"  # one of SCHEDULES; per step, same for all models
    seed: int = 0
    device: str = _execution_only("auto")  # "auto" = cuda if available else cpu; or "cpu", "cuda", "cuda:1", "mps"
    precision: str = "fp32"  # one of PRECISIONS; training only, evaluation always runs in fp32 (fp64 for fp64)
    models_per_shard: int | None = _execution_only(None)  # None = from device memory (CUDA) or CPU_SHARD_BYTES (nets.sizing)
    augment: bool = False  # random 4-px-padded crop + horizontal flip of every training image
    compile: bool = _execution_only(False)  # torch.compile the network
    keep_models: bool = _execution_only(False)  # return each trained model's state dict in EnsembleResult
    record_epochs: bool = _execution_only(False)  # also evaluate on every eval set at the end of every epoch (EnsembleResult.epoch_*)
    threads: int | None = _execution_only(None)  # CPU threads; None = every core this process may use

    def __post_init__(self) -> None:
        check_model(self.model)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; expected one of {SCHEDULES}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; expected one of {PRECISIONS}")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of weights, inputs and evaluation."""
        return torch.float64 if self.precision == "fp64" else torch.float32


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def available_cpus() -> int:
    """The CPU cores this process may run on: its affinity mask where the OS has one (Linux),
    else every core of the machine (macOS, Windows)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` → bf16 autocast on CUDA, fp32 elsewhere; fp32 and bf16 as given."""
    if precision != "auto":
        return precision
    return "bf16" if resolve_device(device).type == "cuda" else "fp32"
