"""Parameter validation: every problem named with its value and what is allowed."""

from __future__ import annotations

import copy
import importlib
import inspect
import re
from dataclasses import Field, fields
from pathlib import Path
from typing import get_type_hints

import pytest
from kedro.pipeline import Pipeline

import longtail.pipelines
from longtail.nets.config import TrainConfig
from longtail.approx.methods import METHODS
from longtail.params import BLOCKS, InvalidParameters, TrainingParams, validate_parameters
from tests.conftest import base_parameters


@pytest.fixture
def parameters() -> dict:
    return base_parameters()


def test_the_default_configuration_is_valid(parameters: dict) -> None:
    study = validate_parameters(parameters)
    assert study.dataset.name == "mnist5k"
    assert study.sampling.n_models >= 500


@pytest.mark.parametrize(
    ("block", "key", "value", "expected"),
    [
        ("sampling", "subset_ratio", 1.0, "sampling.subset_ratio=1.0"),
        ("sampling", "subset_ratio", 0.0, "sampling.subset_ratio=0.0"),
        ("sampling", "n_models", 1, "sampling.n_models=1"),
        ("dataset", "name", "imagenet", "dataset.name='imagenet'"),
        ("training", "model", "transformer", "training.model='transformer'"),
        ("scoring", "influence_threshold", 1.5, "scoring.influence_threshold=1.5"),
        ("scoring", "memorization_threshold", -0.1, "scoring.memorization_threshold=-0.1"),
        ("dataset", "label_noise", 1.0, "dataset.label_noise=1.0"),
        ("removal", "thresholds", [0.5, 0.2], "removal.thresholds"),
        ("removal", "thresholds", [0.2, 1.2], "removal.thresholds"),
        ("training", "device", "tpu", "training.device='tpu'"),
        ("scoring", "top_k", 0, "scoring.top_k=0"),
        ("scoring", "influence_threshold", 0.0, "scoring.influence_threshold=0.0"),
        ("scoring", "pairs", "cross_class", "scoring.pairs='cross_class'"),
        ("scoring", "selection", "loose", "scoring.selection='loose'"),
        ("scoring", "fdr", 1.0, "scoring.fdr=1.0"),
        ("sampling", "scheme", "stratified", "sampling.scheme='stratified'"),
        ("sampling", "block_size", 1, "sampling.block_size=1"),
        ("training", "claim_timeout_s", 1, "training.claim_timeout_s=1"),
        ("training", "executor", "ray", "training.executor='ray'"),
        ("training", "precision", "fp16", "training.precision='fp16'"),
        ("approximation", "model_counts", [25, 10], "approximation.model_counts=[25, 10]"),
        ("approximation", "model_counts", [1, 10], "approximation.model_counts=[1, 10]"),
        ("approximation", "proxy_runs", 9, "approximation.proxy_runs=9"),
        ("approximation", "per_test", 0, "approximation.per_test=0"),
        ("approximation", "methods", [], "approximation.methods=[]"),
        ("approximation", "methods", ["fz", "fz"], "approximation.methods=['fz', 'fz']"),
    ],
)
def test_each_bad_value_is_named(parameters: dict, block: str, key: str, value: object, expected: str) -> None:
    bad = copy.deepcopy(parameters)
    bad[block][key] = value
    with pytest.raises(InvalidParameters) as error:
        validate_parameters(bad)
    assert expected in str(error.value)
    assert len(error.value.problems) == 1


def _just_outside(bounds: dict[str, float], kind: type) -> list[object]:
    step = 1 if kind is int else 1e-9
    return [limit - step if op == "ge" else limit if op == "gt" else limit + step if op == "le" else limit for op, limit in bounds.items()]


@pytest.mark.parametrize("spec", [f for f in fields(TrainConfig) if f.metadata.get("parameter", True)], ids=lambda f: f.name)
def test_each_trainer_setting_is_a_parameter_with_its_declared_bounds(parameters: dict, spec: Field) -> None:
    """TrainingParams is built from TrainConfig's fields: each setting users may set is a
    parameter, with the setting's default (or 'auto'), and a value outside its bounds or
    choices is refused by the parameters and by TrainConfig alike."""
    field = TrainingParams.model_fields[spec.name]
    assert field.default == ("auto" if spec.metadata.get("auto") else spec.default)
    kind = type(spec.default) if spec.default is not None else int
    bad_values = _just_outside(spec.metadata.get("bounds", {}), kind) + (["not-a-choice"] if spec.metadata.get("choices") else [])
    for value in bad_values:
        bad = copy.deepcopy(parameters)
        bad["training"][spec.name] = value
        with pytest.raises(InvalidParameters, match=f"training.{spec.name}="):
            validate_parameters(bad)
        with pytest.raises(ValueError, match=f"{spec.name}="):
            TrainConfig(**{spec.name: value})
    library_only = {f.name for f in fields(TrainConfig)} - set(TrainingParams.model_fields)
    assert library_only == {"keep_models", "record_epochs", "threads"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("device", "gpu"), ("device", "cuda:x"), ("hidden_sizes", (0,)), ("model", "vgg"),
        ("epochs", 0), ("epochs", 2.5), ("lr", "fast"), ("schedule", "step"), ("augment", "sometimes"),
    ],
)
def test_trainconfig_refuses_what_the_parameters_refuse_with_the_same_message(parameters: dict, name: str, value: object) -> None:
    """Library users build TrainConfig directly: it checks each setting itself (before, it took
    device='gpu' or hidden_sizes=(0,), which `kedro run` refused), in the parameters' words."""
    bad = copy.deepcopy(parameters)
    bad["training"][name] = value
    with pytest.raises(InvalidParameters) as refused:
        validate_parameters(bad)
    with pytest.raises(ValueError) as error:
        TrainConfig(**{name: value})
    assert refused.value.problems == [f"training.{error.value}"]


def test_all_problems_are_reported_at_once(parameters: dict) -> None:
    bad = copy.deepcopy(parameters)
    bad["sampling"]["n_models"] = 0
    bad["dataset"]["name"] = "cifar"
    bad["training"]["epoch"] = 3  # a typo of `epochs`
    with pytest.raises(InvalidParameters) as error:
        validate_parameters(bad)
    message = str(error.value)
    assert "sampling.n_models=0" in message
    assert "dataset.name='cifar'" in message
    assert "training.epoch: unknown parameter" in message
    assert len(error.value.problems) == 3


def test_allowed_names_are_listed(parameters: dict) -> None:
    bad = copy.deepcopy(parameters)
    bad["dataset"]["name"] = "imagenet"
    with pytest.raises(InvalidParameters, match="digits.*mnist5k"):
        validate_parameters(bad)


def test_shard_larger_than_the_study_is_refused(parameters: dict) -> None:
    bad = copy.deepcopy(parameters)
    bad["training"]["models_per_shard"] = bad["sampling"]["n_models"] + 1
    with pytest.raises(InvalidParameters, match="models_per_shard"):
        validate_parameters(bad)


def test_missing_block_is_reported(parameters: dict) -> None:
    bad = copy.deepcopy(parameters)
    del bad["removal"]
    with pytest.raises(InvalidParameters, match="removal: missing"):
        validate_parameters(bad)


@pytest.mark.parametrize("device", ["cuda", "cuda:7", "mps"])
def test_a_device_this_machine_lacks_is_refused_naming_the_ones_it_has(parameters: dict, device: str) -> None:
    import torch  # noqa: PLC0415

    present = (device.startswith("cuda") and torch.cuda.device_count() > int(device.partition(":")[2] or 0)) or (
        device == "mps" and torch.backends.mps.is_available()
    )
    if present:
        pytest.skip(f"this machine has {device}")
    parameters["training"]["device"] = device
    problem = validate_parameters(parameters).training.device_problem()  # the parameters themselves are valid
    assert problem.startswith(f"training.device={device!r}: not available on this machine")
    assert "allowed: auto, cpu" in problem


def test_a_remote_dask_cluster_may_have_devices_the_driver_lacks(parameters: dict) -> None:
    parameters["training"].update(device="cuda:3", executor="dask", scheduler_address="tcp://gpu-node:8786")
    assert validate_parameters(parameters).training.device_problem() is None


def test_every_node_receives_its_parameter_blocks_typed() -> None:
    """Kedro hands a node the typed block only where the node's annotation names the block's
    model; a node annotated otherwise would get the raw dict and have to parse it again."""
    pipeline = sum((module.create_pipeline() for module in _pipeline_modules()), Pipeline([]))
    read = 0
    for node in pipeline.nodes:
        hints = get_type_hints(node.func)
        arguments = list(inspect.signature(node.func).parameters)
        for position, name in enumerate(node.inputs):
            if name.startswith("params:"):
                assert hints[arguments[position]] is BLOCKS[name.removeprefix("params:")], (node.name, name)
                read += 1
    assert read >= 20  # every pipeline reads its blocks


def _pipeline_modules() -> list:
    folder = Path(longtail.pipelines.__file__).parent
    return [importlib.import_module(f"longtail.pipelines.{p.name}") for p in sorted(folder.iterdir()) if (p / "pipeline.py").exists()]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"models_per_shard": 0}, "training.models_per_shard=0: Input should be greater than or equal to 1, or 'auto'"),
        ({"models_in_memory": 0}, "training.models_in_memory=0: Input should be greater than or equal to 1, or 'auto'"),
        ({"models_per_shard": 8, "models_in_memory": 9}, "training.models_in_memory=9 exceeds training.models_per_shard=8"),
    ],
)
def test_the_store_shard_and_the_models_in_memory_are_checked_apart(parameters: dict, changes: dict, expected: str) -> None:
    bad = copy.deepcopy(parameters)
    bad["training"].update(changes)
    with pytest.raises(InvalidParameters, match=re.escape(expected)):
        validate_parameters(bad)
    fine = copy.deepcopy(parameters)
    fine["training"].update(models_per_shard=8, models_in_memory=8)
    assert validate_parameters(fine).training.models_in_memory == 8


def test_unknown_approximation_methods_are_refused_with_the_allowed_ones(parameters: dict) -> None:
    bad = copy.deepcopy(parameters)
    bad["approximation"]["methods"] = ["fz", "lira", "trak"]
    with pytest.raises(InvalidParameters) as error:
        validate_parameters(bad)
    assert error.value.problems == [
        "approximation.methods=['fz', 'lira', 'trak']: unknown methods ['lira']; allowed: " + ", ".join(METHODS)
    ]


def test_checkpoints_after_the_last_epoch_are_refused(parameters: dict) -> None:
    bad = copy.deepcopy(parameters)
    bad["approximation"]["checkpoint_epochs"] = [0, 5, bad["training"]["epochs"] + 1]
    with pytest.raises(InvalidParameters, match=r"epochs \[11\] come after the last of training.epochs=10; allowed: 0"):
        validate_parameters(bad)
    bad["approximation"]["checkpoint_epochs"] = [0, 5, 10]
    assert validate_parameters(bad).approximation.checkpoint_epochs == (0, 5, 10)
