"""The trainer's settings: :class:`TrainConfig`, the one definition of each training setting:
its type, default, allowed values and bounds, whether it changes a model's numbers and whether
users set it as a parameter (all on its field, :func:`setting`), and the device and CPU cores
it resolves to."""

from __future__ import annotations

import operator
import os
import platform
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch

from longtail.nets.models import check_model

SCHEDULES = ("constant", "cosine", "linear")  # learning-rate schedules, per step (linear: to 0)
#: How a model's numbers are computed: float32 weights and activations; the same with the
#: training's matrix products in TF32 (CUDA only: NVIDIA's tensor-core format, a 10-bit
#: mantissa); float32 weights under bf16 autocast (matrix products and convolutions in
#: bfloat16, a 7-bit mantissa); or float64 throughout (slow: a reference whose rounding is far
#: below any difference a bug makes, used by the tests).
PRECISIONS = ("fp32", "tf32", "bf16", "fp64")

_BOUNDS = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}
_BOUND_WORDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}


def setting(
    default: Any,
    *,
    identity: bool | Literal["when_set"] = True,
    parameter: bool = True,
    auto: bool = False,
    choices: tuple[str, ...] | None = None,
    **bounds: float,
) -> Any:
    """A :class:`TrainConfig` field with what the project derives from it.

    identity: it changes a trained model's numbers, so it is part of the shard store's
        experiment identity (``longtail.study.model_identity``); False for how or where models
        are computed (shards trained under other values are interchangeable); "when_set" for a
        setting added later whose default computes what the trainer computed before it existed:
        only another value enters the identity, so the shards already stored stay valid.
    parameter: users set it as ``training.<name>``: ``longtail.params.TrainingParams`` is built
        from these fields; False for the library's own switches.
    auto: the parameter also takes ``auto`` (its default), which ``longtail.study.train_config``
        resolves for the machine.
    choices, bounds (``ge``, ``gt``, ``le``, ``lt``): its allowed values, checked here and by
        the parameters alike.
    """
    if set(bounds) - set(_BOUNDS):
        raise TypeError(f"unknown bounds {sorted(set(bounds) - set(_BOUNDS))}; allowed: {sorted(_BOUNDS)}")
    metadata = {"identity": identity, "parameter": parameter, "auto": auto, "choices": choices, "bounds": bounds}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class TrainConfig:
    """Every trainer setting, the one definition of each: the ``training`` parameters
    (``longtail.params.TrainingParams``) and the store's experiment identity derive from it."""

    model: str = "mlp"  # one of ARCHITECTURES, or a factory's import path 'package.module:factory' (docs/models.md)
    hidden_sizes: tuple[int, ...] = (512, 256)  # mlp only: its hidden layers' widths
    epochs: int = setting(10, ge=1)
    batch_size: int = setting(128, ge=1)
    lr: float = setting(0.1, gt=0)
    momentum: float = setting(0.9, ge=0, lt=1)
    weight_decay: float = setting(5e-4, ge=0)
    label_smoothing: float = setting(0.0, ge=0, lt=1, identity="when_set")  # of the training loss's targets (0: none)
    schedule: str = setting("constant", choices=SCHEDULES)  # per step, the same for all models
    seed: int = setting(0, ge=0)  # with a model's index, its initialisation and data order
    device: str = setting("auto", identity=False)  # "auto" = cuda if available else cpu; or "cpu", "cuda", "cuda:1", "mps"
    # training only; evaluation runs in fp32 (fp64 for fp64). auto: bf16 autocast on CUDA, else fp32
    precision: str = setting("fp32", auto=True, choices=PRECISIONS)
    # None (the parameter's auto) = from device memory (CUDA) or CPU_SHARD_BYTES (nets.sizing)
    models_per_shard: int | None = setting(None, identity=False, auto=True, ge=1)
    augment: bool = False  # random 4-px-padded crop + horizontal flip of every training image
    compile: bool = setting(False, identity=False)  # torch.compile the network
    keep_models: bool = setting(False, identity=False, parameter=False)  # return each model's state dict in EnsembleResult
    # also evaluate on every eval set at the end of every epoch (EnsembleResult.epoch_*)
    record_epochs: bool = setting(False, identity=False, parameter=False)
    # CPU threads; None = every core this process may use
    threads: int | None = setting(None, identity=False, parameter=False, ge=1)

    def __post_init__(self) -> None:
        check_model(self.model)
        for spec in fields(self):
            problem = _setting_problem(spec.metadata, getattr(self, spec.name))
            if problem:
                raise ValueError(f"{spec.name}={getattr(self, spec.name)!r}: {problem}")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of weights, inputs and evaluation."""
        return torch.float64 if self.precision == "fp64" else torch.float32


def _setting_problem(metadata: Any, value: Any) -> str | None:
    """What is wrong with ``value`` for a setting with this field ``metadata``; None if nothing."""
    choices, bounds = metadata.get("choices"), metadata.get("bounds") or {}
    if choices is not None and value not in choices:
        return f"expected one of {', '.join(choices)}"
    broken = [
        f"{_BOUND_WORDS[op]} {limit}" for op, limit in bounds.items() if value is not None and not _BOUNDS[op](value, limit)
    ]
    return f"must be {' and '.join(broken)}" if broken else None


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


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "cpu"


def describe_device(name: str) -> str:
    """What ``training.device`` ``name`` trains on here, in words: the GPU's name, or the CPU
    model and the cores this process may use."""
    device = resolve_device(name)
    if device.type == "cuda" and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cuda":
        return f"{device} (not present on this machine)"
    if device.type == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({cpu_model()}, {available_cpus()} cores)"


def describe_machine() -> str:
    """This machine in words: CPU model, cores, memory (where the OS tells it) and OS."""
    parts = [cpu_model(), f"{os.cpu_count() or 1} cores"]
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        parts.append(f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB memory")
    return ", ".join(parts) + f"; {platform.system()} {platform.release()}"


def precision_problem(precision: str, device: str) -> str | None:
    """Why ``precision`` cannot train on ``device``; None if it can."""
    if precision == "tf32" and resolve_device(device).type != "cuda":
        where = f"{device!r} (CPU here)" if device == "auto" else repr(device)
        return f"tf32 runs on CUDA devices only, not on {where}; use fp32 or bf16"
    return None


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` → bf16 autocast on CUDA, fp32 elsewhere; any other precision as given."""
    if precision != "auto":
        return precision
    return "bf16" if resolve_device(device).type == "cuda" else "fp32"
