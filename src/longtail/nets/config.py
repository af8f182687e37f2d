"""The trainer's settings: :class:`TrainConfig`, the one definition of each training setting:
its type, default, allowed values and bounds, whether it changes a model's numbers and whether
users set it as a parameter (all on its field, :func:`setting`), and the device and CPU cores
it resolves to. pydantic checks each value against its field (:func:`allowed_values`), for
``TrainConfig`` and for the ``training`` parameters alike, with the same messages."""

from __future__ import annotations

import dataclasses
import os
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Annotated, Any, Literal, get_type_hints

import torch
from pydantic import AfterValidator, Field, TypeAdapter, ValidationError

from longtail.nets.data import TTAS
from longtail.nets.models import check_model

# learning-rate schedules, per step (linear: to 0; triangular: airbench's, longtail.nets.loop.TRIANGLE)
SCHEDULES = ("constant", "cosine", "linear", "triangular")
#: How a model's numbers are computed: float32 weights and activations; the same with the
#: training's matrix products in TF32 (CUDA only: NVIDIA's tensor-core format, a 10-bit
#: mantissa); float32 weights under bf16 autocast (matrix products and convolutions in
#: bfloat16, a 7-bit mantissa); or float64 throughout (slow: a reference whose rounding is far
#: below any difference a bug makes, used by the tests).
PRECISIONS = ("fp32", "tf32", "bf16", "fp64")

_BOUNDS = ("ge", "gt", "le", "lt")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def setting(
    default: Any,
    *,
    identity: bool | Literal["when_set"] = True,
    parameter: bool = True,
    auto: bool = False,
    choices: tuple[str, ...] | None = None,
    check: Callable[[Any], Any] | None = None,
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
    choices, bounds (``ge``, ``gt``, ``le``, ``lt``), check (returns the value, or raises
        ``ValueError`` saying what is allowed): its allowed values, checked by ``TrainConfig``
        and by the parameters alike (:func:`allowed_values`).
    """
    if set(bounds) - set(_BOUNDS):
        raise TypeError(f"unknown bounds {sorted(set(bounds) - set(_BOUNDS))}; allowed: {list(_BOUNDS)}")
    metadata = {"identity": identity, "parameter": parameter, "auto": auto, "choices": choices, "bounds": bounds, "check": check}
    return field(default=default, metadata=metadata)


def _positive_widths(sizes: tuple[int, ...]) -> tuple[int, ...]:
    """Positive widths; no hidden layer at all (``[]``) is a linear model, e.g. logistic regression."""
    if any(size < 1 for size in sizes):
        raise ValueError("must be a list of positive layer widths ([] for a linear model)")
    return sizes


def _device_name(device: str) -> str:
    if not _DEVICE.match(device):
        raise ValueError("must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return device


@dataclass(frozen=True)
class TrainConfig:
    """Every trainer setting, the one definition of each: the ``training`` parameters
    (``longtail.params.TrainingParams``) and the store's experiment identity derive from it."""

    # one of ARCHITECTURES, or a factory's import path 'package.module:factory' (docs/models.md)
    model: str = setting("mlp", check=check_model)
    hidden_sizes: tuple[int, ...] = setting((512, 256), check=_positive_widths)  # mlp only: its hidden layers' widths
    epochs: int = setting(10, ge=1)
    batch_size: int = setting(128, ge=1)
    lr: float = setting(0.1, gt=0)
    momentum: float = setting(0.9, ge=0, lt=1)
    weight_decay: float = setting(5e-4, ge=0)
    label_smoothing: float = setting(0.0, ge=0, lt=1, identity="when_set")  # of the training loss's targets (0: none)
    schedule: str = setting("constant", choices=SCHEDULES)  # per step, the same for all models
    seed: int = setting(0, ge=0)  # with a model's index, its initialisation and data order
    # "auto" = cuda if available else cpu; or "cpu", "cuda", "cuda:1", "mps"
    device: str = setting("auto", identity=False, check=_device_name)
    # training only; evaluation runs in fp32 (fp64 for fp64). auto: resolve_precision, by device and network
    precision: str = setting("fp32", auto=True, choices=PRECISIONS)
    # models trained together as one batched computation (held in memory at once); None (the
    # parameter's auto) = from device memory (CUDA) or CPU_SHARD_BYTES (nets.sizing). How many
    # models a stored shard holds is the store's business (training.models_per_shard).
    models_in_memory: int | None = setting(None, identity=False, auto=True, ge=1)
    augment: bool = False  # random 4-px-padded crop + horizontal flip of every training image (the recipe's own for airbench94)
    # test-time augmentation: evaluation (hence correctness) judges the mean logits over these views
    tta: str = setting("none", choices=TTAS, identity="when_set")
    compile: bool = setting(False, identity=False)  # torch.compile the network
    keep_models: bool = setting(False, identity=False, parameter=False)  # return each model's state dict in EnsembleResult
    # also evaluate on every eval set at the end of every epoch (EnsembleResult.epoch_*)
    record_epochs: bool = setting(False, identity=False, parameter=False)
    # CPU threads; None = every core this process may use
    threads: int | None = setting(None, identity=False, parameter=False, ge=1)

    def __post_init__(self) -> None:
        """Each value checked against its field, and converted as the parameters convert it (a
        list of widths becomes a tuple): ``ValueError`` naming the first wrong one."""
        for name, adapter in _adapters().items():
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, adapter.validate_python(value))
            except ValidationError as error:
                raise ValueError(f"{name}={value!r}: {problem(error.errors(include_url=False)[0])}") from None

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of weights, inputs and evaluation."""
        return torch.float64 if self.precision == "fp64" else torch.float32


def allowed_values(spec: dataclasses.Field, kind: Any) -> Any:
    """``kind`` narrowed to what the setting ``spec`` allows, its choices, bounds and check, as
    a type that pydantic checks (``TrainConfig``'s own fields, and ``TrainingParams``')."""
    choices, bounds, check = (spec.metadata.get(key) for key in ("choices", "bounds", "check"))
    constraints = ([Field(**bounds)] if bounds else []) + ([AfterValidator(check)] if check else [])
    kind = Literal[choices] if choices else kind
    return Annotated[(kind, *constraints)] if constraints else kind


@cache
def _adapters() -> dict[str, TypeAdapter]:
    types = get_type_hints(TrainConfig)
    return {spec.name: TypeAdapter(allowed_values(spec, types[spec.name])) for spec in fields(TrainConfig)}


def problem(error: Any) -> str:
    """What one of pydantic's errors says is wrong, without its "Value error, " prefix."""
    return error["msg"].removeprefix("Value error, ")


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


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bfloat16 arithmetic in hardware (x86 AVX512-BF16 or AMX), rather
    than oneDNN emulating it with float32 instructions."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_precision(precision: str, device: str, model: str) -> str:
    """``auto`` → the precision measured fastest for ``model``'s kind on ``device``
    (docs/benchmarks.md, "Which precision auto picks"); any other precision as given.

    - CUDA: tf32 for the MLP (no per-step weight casts; 11% faster than bf16 on an H200),
      bf16 autocast for convolutional and users' networks (bf16 13.9 against tf32 10.5 models/s
      for the ResNet);
    - a CPU with bf16 in hardware: bf16 autocast (on a 2-core AMD EPYC 1.44x fp32 for the
      default study, 1.03-2.1x for the other networks; its lists replicate as fp32's do);
    - elsewhere (other CPUs, Apple GPUs): fp32.
    """
    if precision != "auto":
        return precision
    kind = resolve_device(device).type
    if kind == "cuda":
        return "tf32" if model == "mlp" else "bf16"
    return "bf16" if kind == "cpu" and cpu_computes_bf16() else "fp32"
