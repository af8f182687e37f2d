"""`kedro run` reports the user's mistakes as one readable message, writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

KEDRO = str(Path(sys.executable).with_name("kedro"))


def kedro_run(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "true", "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([KEDRO, "run", "--env", "smoke", *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def written_files(root: Path) -> list[Path]:
    return [p for p in (root / "data").rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            "sampling.n_models=1,training.epoch=3,removal.repeats=0",
            ["sampling.n_models=1", "training.epoch: unknown parameter", "removal.repeats=0"],
        ),
        ("dataset.name=mnist,dataset.root=nowhere", ["mnist", "nowhere", "download"]),
    ],
)
def test_a_user_mistake_gives_one_message_and_no_trace(
    make_project: Callable[[str], Path], params: str, expected: list[str]
) -> None:
    root = make_project("cli")
    result = kedro_run(root, "--params", params)
    assert result.returncode == 1
    assert "Error:" in result.stderr
    for text in expected:
        assert text in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "╭" not in result.stderr  # no rich traceback box either
    assert written_files(root) == []
