"""The experiment identity: whatever changes a model's numbers is in it, nothing else."""

from __future__ import annotations

import platform
from dataclasses import replace

import pytest
import torch

from longtail.nets.config import TrainConfig, cpu_computes_bf16, resolve_precision
from longtail.params import TrainingParams
from longtail.study import model_identity, train_config

BASE = TrainConfig(model="cnn", hidden_sizes=(64,), epochs=2, device="cpu", precision="fp32")


@pytest.mark.parametrize(
    "change",
    [
        {"device": "cuda"},
        {"models_in_memory": 7},
        {"compile": True},
        {"threads": 3},
        {"keep_models": True},
        {"record_epochs": True},
        {"hidden_sizes": (8, 8)},  # the cnn has fixed widths
    ],
)
def test_what_does_not_change_a_cnn_model_is_not_in_its_identity(change: dict) -> None:
    assert model_identity(replace(BASE, **change)) == model_identity(BASE)


@pytest.mark.parametrize(
    ("base", "change"),
    [
        (BASE, {"precision": "bf16"}),
        (BASE, {"lr": 0.2}),
        (BASE, {"seed": 1}),
        (BASE, {"augment": True}),
        (BASE, {"model": "resnet"}),
        (BASE, {"label_smoothing": 0.1}),
        (BASE, {"model": "airbench94"}),
        (BASE, {"schedule": "triangular"}),
        (BASE, {"tta": "mirror"}),
        (replace(BASE, model="mlp"), {"hidden_sizes": (8, 8)}),
    ],
)
def test_what_changes_a_model_is_in_its_identity(base: TrainConfig, change: dict) -> None:
    assert model_identity(replace(base, **change)) != model_identity(base)


def test_a_setting_added_later_leaves_the_identity_of_stored_shards_at_its_default() -> None:
    """label_smoothing came after stores existed; at its default (0, what the trainer computed
    before) it is not in the identity, so those stores stay valid."""
    assert "label_smoothing" not in model_identity(BASE) and "tta" not in model_identity(BASE)
    assert model_identity(replace(BASE, label_smoothing=0.1))["label_smoothing"] == 0.1


def cpu_flags() -> set[str]:
    with open("/proc/cpuinfo") as f:
        return set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64", reason="reads x86 /proc/cpuinfo flags")
def test_native_bf16_is_read_from_the_cpu() -> None:
    """Independent of torch's CPU probe: the kernel's own list of the CPU's features."""
    assert cpu_computes_bf16() == bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def test_auto_precision_is_the_one_measured_fastest_for_the_device_and_network() -> None:
    cpu = "bf16" if cpu_computes_bf16() else "fp32"
    assert [resolve_precision("auto", "cpu", model) for model in ("mlp", "cnn", "airbench94")] == [cpu] * 3
    assert resolve_precision("auto", "cuda:1", "mlp") == "tf32"
    assert [resolve_precision("auto", "cuda", model) for model in ("cnn", "resnet", "airbench94", "pkg.mod:net")] == ["bf16"] * 4
    assert resolve_precision("auto", "mps", "mlp") == "fp32"
    assert resolve_precision("fp32", "cpu", "mlp") == "fp32" and resolve_precision("bf16", "cuda", "mlp") == "bf16"
    params = TrainingParams(model="mlp", hidden_sizes=(8,), epochs=1, batch_size=8, lr=0.1, momentum=0.0,
                            weight_decay=0.0, schedule="constant", seed=0, device="cpu")
    assert train_config(params).precision == cpu
    assert model_identity(train_config(params))["precision"] == cpu  # the id names what ran, never "auto"


def test_a_cpu_without_bf16_arithmetic_keeps_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a CPU without AVX512-BF16 or AMX (older x86, most laptops): fp32, whatever the network."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not cpu_computes_bf16()
    assert {resolve_precision("auto", "cpu", model) for model in ("mlp", "resnet")} == {"fp32"}
