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


@pytest.mark.parametrize("structure", ["synthetic", "realistic"])
def test_scoring_benchmark_smoke(tmp_path: Path, structure: str) -> None:
    result = run("scoring.py", tmp_path / "s.json", "--models", "300", "--train", "300", "--test", "1000", "--structure", structure)
    assert {"n_models", "n_train", "n_test", "seconds", "peak_rss_mb", "n_tests"} <= set(result)
    assert (result["n_models"], result["n_train"], result["n_test"]) == (300, 300, 1000)
    assert result["seconds"] > 0 and result["peak_rss_mb"] > 0
    assert result["structure"] == structure and result["pairs"] == "same_class"
    assert result["pairs_with_infl_at_most_0"] == 0 and result["most_pairs_of_one_test_example"] <= 5 + 5
    # every 0.4 helper and most 0.2 ones (3-5 se at 300 models, less where base + 0.6 > 1 caps
    # it) are among the top 5 of 30 same-class training examples; the full-size run finds all
    assert result["planted_pairs_returned"] >= 0.95 * result["planted_pairs"] > 0
    if structure == "realistic":
        assert result["constant_test_columns"] >= 0.8 * 1000
