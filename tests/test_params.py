"""Parameter validation: every problem named with its value and what is allowed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from longtail.params import InvalidParameters, validate_parameters

CONF = Path(__file__).resolve().parents[1] / "conf" / "base"


@pytest.fixture
def parameters() -> dict:
    merged: dict = {}
    for path in sorted(CONF.glob("parameters_*.yml")):
        merged.update(yaml.safe_load(path.read_text()))
    return merged


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
    ],
)
def test_each_bad_value_is_named(parameters: dict, block: str, key: str, value: object, expected: str) -> None:
    bad = copy.deepcopy(parameters)
    bad[block][key] = value
    with pytest.raises(InvalidParameters) as error:
        validate_parameters(bad)
    assert expected in str(error.value)
    assert len(error.value.problems) == 1


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
    with pytest.raises(InvalidParameters) as error:
        validate_parameters(parameters)
    (problem,) = error.value.problems
    assert problem.startswith(f"training.device={device!r}: not available on this machine")
    assert "allowed: auto, cpu" in problem


def test_a_remote_dask_cluster_may_have_devices_the_driver_lacks(parameters: dict) -> None:
    parameters["training"].update(device="cuda:3", executor="dask", scheduler_address="tcp://gpu-node:8786")
    assert validate_parameters(parameters).training.device == "cuda:3"
