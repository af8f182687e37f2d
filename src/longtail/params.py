"""Typed parameters: the one place where every parameter of the study is checked.

Each pipeline reads its block of ``conf/base/parameters_<pipeline>.yml`` as one of the
models below. ``validate_parameters`` checks all blocks at once when a run's context is created
(``hooks.ParameterValidationHook``), so a typo after hours of configuration is reported in one
message, before any training. The nodes annotate their ``params:<block>`` inputs with these
models, and Kedro hands them the typed block (its parameter validation builds each model from
the annotations), so no node parses a dict again.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any, Literal, Union, get_args, get_type_hints

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from longtail.approx.methods import METHODS
from longtail.errors import UserFacingError
from longtail.nets.config import TrainConfig, allowed_values, precision_problem, problem

DATASETS = ("digits", "mnist5k", "mnist", "fashion_mnist", "cifar10", "cifar100", "image_folder", "table")


class InvalidParameters(UserFacingError, ValueError):
    """Raised with one line per problem: the parameter, its value and what is allowed."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid parameters:\n" + "\n".join(f"  - {p}" for p in problems))


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetParams(_Block):
    name: Literal[DATASETS]  # type: ignore[valid-type]
    test_fraction: float = Field(gt=0, lt=1)  # only for datasets without an official test split
    seed: int = Field(ge=0)
    label_noise: float = Field(ge=0, lt=1)
    root: str = "data/01_raw"  # holds the torchvision datasets' folders; for image_folder, the image folder
    download: bool = False  # torchvision datasets: download into `root` when files are missing
    image_size: int | None = Field(default=None, ge=1)  # image_folder: side in pixels (None: the images' own size)
    channels: Literal[1, 3] | None = None  # image_folder: None = 1 when every image is grayscale, else 3

    @field_validator("image_size", "channels")
    @classmethod
    def _image_folder_only(cls, value: int | None, info: ValidationInfo) -> int | None:
        name = info.data.get("name")
        if value is not None and name not in (None, "image_folder"):
            raise ValueError(f"only used by dataset.name 'image_folder', not {name!r}; remove it")
        return value

    # table only: the file, its label column, and optionally its feature and split columns
    path: str | None = Field(default=None, validate_default=True)
    label_column: str | None = Field(default=None, validate_default=True)
    feature_columns: tuple[str, ...] | None = None  # None = every column but the label and split columns
    split_column: str | None = None  # a column holding 'train' / 'test'; None = split by test_fraction

    @field_validator("path", "label_column", "feature_columns", "split_column")
    @classmethod
    def _table_only(cls, value: object, info: ValidationInfo) -> object:
        name = info.data.get("name")
        if info.field_name in ("path", "label_column") and name == "table" and value is None:
            raise ValueError(f"required for dataset.name 'table': {_TABLE_FIELDS[info.field_name]}")
        if value is not None and name not in (None, "table"):
            raise ValueError(f"only used by dataset.name 'table', not {name!r}; remove it")
        if info.field_name == "feature_columns" and value is not None and not value:
            raise ValueError("must list at least one column, or be null for every column but the label and split")
        return value


_TABLE_FIELDS = {
    "path": "the parquet or CSV file, relative to the project folder",
    "label_column": "the column that holds each row's class",
}


class SamplingParams(_Block):
    n_models: int = Field(ge=2)
    subset_ratio: float = Field(gt=0, lt=1)
    seed: int = Field(ge=0)
    scheme: Literal["independent", "balanced"] = "independent"  # see pipelines/sampling/nodes.py
    block_size: int = Field(default=100, ge=2)  # balanced: models per block in which membership is balanced

    def identity(self) -> dict[str, Any]:
        """What the subsets' distribution depends on (the shard store's experiment identity);
        the independent scheme keeps the identity it had before schemes existed."""
        identity: dict[str, Any] = {"subset_ratio": self.subset_ratio, "seed": self.seed}
        if self.scheme == "balanced":
            identity.update(scheme=self.scheme, block_size=self.block_size)
        return identity


class _TrainingRun(_Block):
    """The ``training`` block's own fields: how a run distributes its training.
    :data:`TrainingParams` adds every trainer setting, with ``TrainConfig``'s own checks."""

    executor: Literal["local", "dask"] = "local"
    scheduler_address: str | None = None  # an existing Dask scheduler; None starts a LocalCluster
    workers: int = Field(default=1, ge=1)  # LocalCluster workers (one per GPU on a multi-GPU machine)
    claim_timeout_s: float = Field(default=600.0, ge=10)  # a shard claim whose heartbeat is older is taken over
    # warn when the subset models fit less of their own training examples, on average
    min_subset_fit: float = Field(default=0.99, ge=0, le=1)

    def device_problem(self) -> str | None:
        """Why this machine cannot train on ``device``; None when it can, or when the models
        train on the workers of a remote Dask cluster (which may have it). A property of the
        machine, not of the parameters: a run that trains checks it
        (``hooks.ParameterValidationHook``), while a notebook may open a GPU study's catalog
        on a laptop."""
        if self.executor == "dask" and self.scheduler_address:
            return None
        problem = device_problem(self.device)
        if problem is not None:
            return f"training.device={self.device!r}: {problem}"
        problem = precision_problem(self.precision, self.device)
        return None if problem is None else f"training.precision={self.precision!r}: {problem}"


def _trainer_settings() -> dict[str, Any]:
    """A field for each of ``TrainConfig``'s parameter settings, with its type, default and
    allowed values as ``longtail.nets.config.setting`` declares them and ``TrainConfig`` checks
    them (``allowed_values``); ``auto`` settings also take, and default to, "auto"."""
    types = get_type_hints(TrainConfig)
    settings: dict[str, Any] = {}
    for spec in fields(TrainConfig):
        if not spec.metadata.get("parameter", True):
            continue
        auto, choices = spec.metadata.get("auto", False), spec.metadata.get("choices")
        if choices and auto:
            kind = Literal[("auto", *choices)]
        elif auto:  # the parameter's "auto" stands for the setting's None
            kind = _or_auto(allowed_values(spec, _without_none(types[spec.name])))
        else:
            kind = allowed_values(spec, types[spec.name])
        settings[spec.name] = (kind, "auto" if auto else spec.default)
    return settings


def _without_none(kind: Any) -> Any:
    return Union[tuple(part for part in get_args(kind) if part is not type(None))] if get_args(kind) else kind


def _or_auto(kind: Any) -> Any:
    """``kind``, or "auto"; one message however a value is wrong (a plain union would report
    one per member)."""
    adapter = TypeAdapter(kind)

    def check(value: Any) -> Any:
        if value == "auto":
            return value
        try:
            return adapter.validate_python(value)
        except ValidationError as error:
            raise ValueError(f"{problem(error.errors()[0])}, or 'auto'") from None

    return Annotated[kind | Literal["auto"], PlainValidator(check)]


#: The ``training`` block: every trainer setting of ``longtail.nets.config.TrainConfig`` (a
#: new setting there is a new parameter here), the run's own fields above, and the store's
#: ``models_per_shard``: models per stored shard (each one file, logged to MLflow and
#: lost to a crash together), auto = ``pipelines.training.nodes.STORE_SHARD`` for the device.
TrainingParams = create_model(
    "TrainingParams",
    __base__=_TrainingRun,
    __module__=__name__,
    **_trainer_settings(),
    models_per_shard=(_or_auto(Annotated[int, Field(ge=1)]), "auto"),
)


def device_problem(device: str) -> str | None:
    """Why ``device`` cannot train on this machine, naming the devices that can; None if it can."""
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = torch.backends.mps.is_available()
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        present = index < cuda
    else:
        present = device != "mps" or mps
    if present:
        return None
    allowed = ["auto", "cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(cuda)] if cuda else []) + (["mps"] if mps else [])
    return f"not available on this machine ({cuda} CUDA devices, MPS {'present' if mps else 'absent'}); allowed: {', '.join(allowed)}"


class ScoringParams(_Block):
    influence_threshold: float = Field(gt=0, le=1)
    memorization_threshold: float = Field(ge=0, le=1)
    top_k: int = Field(ge=1)
    max_block_mb: float = Field(gt=0)
    pairs: Literal["same_class", "all"] = "same_class"  # which (train, test) pairs are scored and tested
    selection: Literal["controlled", "paper"] = "controlled"  # see longtail.estimate.selection
    fdr: float = Field(default=0.1, gt=0, lt=1)  # false discovery rate of the controlled selection


class RemovalParams(_Block):
    thresholds: tuple[float, ...]
    repeats: int = Field(ge=1)
    seed: int = Field(ge=0)

    @field_validator("thresholds")
    @classmethod
    def _sorted_unit_interval(cls, thresholds: tuple[float, ...]) -> tuple[float, ...]:
        if not thresholds:
            raise ValueError("must list at least one threshold")
        if any(not 0 <= t <= 1 for t in thresholds):
            raise ValueError("every threshold must lie in [0, 1]")
        if list(thresholds) != sorted(set(thresholds)):
            raise ValueError("must be sorted in increasing order without repeats")
        return thresholds


class ReportingParams(_Block):
    grid_levels: tuple[float, ...]  # memorization grid: one row per level, the last one a floor
    grid_classes: int = Field(ge=1)  # at most this many classes (columns) in the grid
    grid_per_class: int = Field(ge=1)  # examples per class and level
    influence_rows: int = Field(ge=1)
    influence_per_row: int = Field(ge=1)
    seed: int = Field(ge=0)
    # study_report.html; these bound its size (about 1 MB for the default study, at most 5 MB)
    report_per_class: int = Field(default=12, ge=1)  # most memorized training examples shown per class
    report_max_examples: int = Field(default=240, ge=1)  # and in all (fewer per class when classes are many)
    report_pairs_per_example: int = Field(default=6, ge=1)  # test examples shown for each, strongest first
    report_thumbnail_px: int = Field(default=32, ge=8, le=256)  # longest side of a thumbnail; larger images shrink

    @field_validator("grid_levels")
    @classmethod
    def _increasing_levels(cls, levels: tuple[float, ...]) -> tuple[float, ...]:
        if len(levels) < 2 or any(b <= a for a, b in zip(levels, levels[1:])):
            raise ValueError("must be at least two increasing memorization levels, e.g. [0, 0.25, 0.5, 0.75, 0.9]")
        return levels


class DiagnosticsParams(_Block):
    seed: int = Field(ge=0)  # split of the models into halves, and the proxy models' seed
    top_k: int = Field(ge=1)  # also report the share of flipped labels among the k most suspicious examples
    model_counts: tuple[int, ...]  # convergence: numbers of models to estimate from (all models are always added)
    target_se: float = Field(gt=0, lt=1)  # standard error of mem to find the number of models for
    proxy_models: int = Field(ge=1)  # full-data models trained for the learning-speed proxies
    replication_share: float = Field(default=0.6, gt=0, le=1)  # replicates: other half's estimate >= share x cut-off

    @field_validator("model_counts")
    @classmethod
    def _sorted_counts(cls, counts: tuple[int, ...]) -> tuple[int, ...]:
        if any(n < 2 for n in counts):
            raise ValueError("every count must be at least 2 (two halves of at least one model)")
        if list(counts) != sorted(set(counts)):
            raise ValueError("must be sorted in increasing order without repeats")
        return counts


class ApproximationParams(_Block):
    """The ``approximation`` pipeline's methods (``longtail.approx.methods``) and their budgets."""

    methods: tuple[str, ...]  # subset-model families and full-data-run methods, by name
    model_counts: tuple[int, ...]  # n of the subset-model families (fz-n, ...); counts above sampling.n_models are skipped
    proxy_runs: int = Field(ge=1, le=8)  # full-data training runs of the training-dynamics and attribution methods
    checkpoint_epochs: tuple[int, ...] | None = None  # epochs whose end the runs keep the weights of (0: initial); null: every epoch
    per_test: int = Field(ge=1)  # highest-scored same-class pairs listed per test example and method
    seed: int = Field(ge=0)  # the full-data runs' seed

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; allowed: {', '.join(METHODS)}")
        if not methods or len(set(methods)) != len(methods):
            raise ValueError("must list at least one method, each once")
        return methods

    @field_validator("model_counts", "checkpoint_epochs")
    @classmethod
    def _increasing(cls, counts: tuple[int, ...] | None, info: ValidationInfo) -> tuple[int, ...] | None:
        least = 2 if info.field_name == "model_counts" else 0  # an estimate needs models with and without each example
        if counts is not None and (any(n < least for n in counts) or list(counts) != sorted(set(counts))):
            raise ValueError(f"must be increasing whole numbers without repeats, each at least {least}")
        return counts


class TrackingParams(_Block):
    required: bool = True  # stop before training when the MLflow store does not answer
    timeout_s: float = Field(default=5.0, gt=0)  # how long to wait for it to answer
    offline_store: str = "mlflow-offline.db"  # with required false: local SQLite store used instead


BLOCKS: dict[str, type[_Block]] = {
    "dataset": DatasetParams,
    "sampling": SamplingParams,
    "training": TrainingParams,
    "scoring": ScoringParams,
    "removal": RemovalParams,
    "reporting": ReportingParams,
    "diagnostics": DiagnosticsParams,
    "approximation": ApproximationParams,
    "tracking": TrackingParams,
}


class StudyParams(_Block):
    """All blocks together, for the checks that span blocks."""

    dataset: DatasetParams
    sampling: SamplingParams
    training: TrainingParams
    scoring: ScoringParams
    removal: RemovalParams
    reporting: ReportingParams
    diagnostics: DiagnosticsParams
    approximation: ApproximationParams
    tracking: TrackingParams

    @model_validator(mode="after")
    def _shard_fits(self) -> StudyParams:
        shard, in_memory = self.training.models_per_shard, self.training.models_in_memory
        if isinstance(shard, int) and shard > self.sampling.n_models:
            raise ValueError(
                f"training.models_per_shard={shard} exceeds sampling.n_models="
                f"{self.sampling.n_models}; allowed: at most n_models, or 'auto'"
            )
        if isinstance(shard, int) and isinstance(in_memory, int) and in_memory > shard:
            raise ValueError(
                f"training.models_in_memory={in_memory} exceeds training.models_per_shard={shard}: only the "
                "models of one stored shard train together; allowed: at most models_per_shard, or 'auto'"
            )
        return self

    @model_validator(mode="after")
    def _checkpoints_within_training(self) -> StudyParams:
        late = [e for e in self.approximation.checkpoint_epochs or () if e > self.training.epochs]
        if late:
            raise ValueError(
                f"approximation.checkpoint_epochs={list(self.approximation.checkpoint_epochs)}: epochs {late} come after "
                f"the last of training.epochs={self.training.epochs}; allowed: 0 (the initial weights) to {self.training.epochs}"
            )
        return self


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "missing":
        return f"{where}: missing; it must be set in conf/base/parameters_*.yml"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown parameter (value {error['input']!r}); check its spelling"
    message = problem(error)
    if not where or isinstance(error["input"], dict):  # a check across a block's keys names them itself
        return message
    return f"{where}={error['input']!r}: {message}"


def validate_parameters(parameters: dict[str, Any]) -> StudyParams:
    """Check every block and the rules across blocks; report all problems at once. Keys that
    are no block's (e.g. a Kedro option) are left alone."""
    try:
        return StudyParams.model_validate({name: parameters[name] for name in BLOCKS if name in parameters})
    except ValidationError as error:
        raise InvalidParameters([_describe(e) for e in error.errors(include_url=False)]) from None
