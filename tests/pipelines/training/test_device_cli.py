"""A device the machine lacks, or a precision its device lacks, is refused with the parameters:
one message, nothing written."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.test_cli import written_files


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("training.device=cuda", ["training.device='cuda': not available on this machine", "allowed: auto, cpu"]),
        ("training.precision=tf32", ["training.precision='tf32': tf32 runs on CUDA devices only, not on 'cpu'; use fp32 or bf16"]),
    ],
)
def test_training_on_a_missing_gpu_stops_before_anything_is_written(
    make_project: Callable[[str], Path], kedro_cli: Callable[..., subprocess.CompletedProcess], override: str, expected: list[str]
) -> None:
    root = make_project("no-gpu")
    result = kedro_cli(root, "run", "--env", "smoke", "--params", override)
    assert result.returncode == 1
    assert all(text in result.stderr for text in expected), result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr and "╭" not in result.stderr
    assert written_files(root) == []
