"""The benchmark scripts run in CI-sized form and write the documented JSON keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, out: Path, *args: str) -> dict:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--json", str(out), *args], check=True, timeout=600)
    return json.loads(out.read_text())


def test_training_benchmark_smoke(tmp_path: Path) -> None:
    result = run("training.py", tmp_path / "t.json", "--preset", "digits-mlp", "--models", "4", "--loop-models", "2", "--device", "cpu")
    keys = {"preset", "device", "models", "vectorized_models_per_s", "loop_models_per_s", "speedup", "achieved_gflops", "peak_gflops"}
    assert keys <= set(result)
    assert result["preset"] == "digits-mlp" and result["models"] == 4 and result["device"]
    assert result["vectorized_models_per_s"] > 0 and result["loop_models_per_s"] > 0
    assert result["speedup"] == pytest.approx(result["vectorized_models_per_s"] / result["loop_models_per_s"])
    assert 0 < result["achieved_gflops"] < result["peak_gflops"]


def test_scoring_benchmark_smoke(tmp_path: Path) -> None:
    result = run("scoring.py", tmp_path / "s.json", "--models", "40", "--train", "300", "--test", "50")
    assert {"n_models", "n_train", "n_test", "seconds", "peak_rss_mb"} <= set(result)
    assert (result["n_models"], result["n_train"], result["n_test"]) == (40, 300, 50)
    assert result["seconds"] > 0 and result["peak_rss_mb"] > 0
