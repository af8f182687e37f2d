"""The benchmark scripts run in CI-sized form and write the documented JSON keys."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from longtail.estimate import memorization

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


def test_scoring_benchmark_times_the_tails_it_checks_against_scipy(tmp_path: Path) -> None:
    result = run("scoring.py", tmp_path / "t.json", "--tails", "2000")
    assert (result["tails"], result["models"]) == (2000, 500)
    assert {"tail_seconds", "scipy_sf_seconds"} <= set(result)
    # the tail drops terms below 1e-17 of its sum; the two agree to ~1e-12 (summation order)
    assert result["max_abs_difference"] < 1e-9
    far = run("scoring.py", tmp_path / "far.json", "--tails", "2000", "--tail-models", "4000")
    assert far["models"] == 4000 and far["tails_differing_by_over_1e-9"] == 0  # far lower tails among them


def test_replication_benchmark_round_trip_through_a_machine_without_the_project(tmp_path: Path) -> None:
    """prepare (here) → train_arrays.py (the library alone, as on a lent GPU machine) → measure."""
    folder = tmp_path / "study"
    replication = [sys.executable, str(ROOT / "benchmarks" / "replication.py")]
    subprocess.run([*replication, "prepare", "--dataset", "digits", "--models", "12", "--trained", str(folder)], check=True, timeout=600)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_arrays.py"), str(folder), "--device", "cpu"], check=True, timeout=600, env=env)
    trained, masks = np.load(folder / "trained.npz"), np.load(folder / "inputs.npz")["masks"]
    assert tuple(trained["shape_train"]) == masks.shape == (12, 1437)
    correct = np.unpackbits(trained["train_correct"], axis=1)[:, : masks.shape[1]].astype(bool)
    assert correct[masks].mean() > 0.95  # the models did train: they know their own subsets
    result = run("replication.py", tmp_path / "r.json", "measure", "--dataset", "digits", "--models", "4", "--reference", "4", "12", "--trained", str(folder))
    assert result["models"] == 4 and result["reference"] == [4, 12]
    # measure read back the same correctness: its reference count is the one computed from it here
    mem = memorization(masks[4:12], correct[4:12])["mem"].to_numpy()
    assert result["reference_memorized"] == int((np.nan_to_num(mem, nan=-1) >= 0.25).sum())
    sizes = ("--pairs", "2", "--models", "4", "--block", "2", "--trunks", "2", "--branches", "2", "--last", "1")
    noise = run("noise.py", tmp_path / "n.json", "--trained", str(folder), "--reference", "4", "12", *sizes)
    assert noise["memorized_examples"] == result["reference_memorized"]
    assert {"twins", "shared_seeds", "branches"} <= set(noise) and all(noise[k]["seconds"] > 0 for k in ("twins", "branches"))


def test_approximations_benchmark_against_an_exported_reference(tmp_path: Path) -> None:
    """replication.py train → export_reference.py (reads the store, trains nothing) →
    approximations.py, which trains only the timing model: the study side's models are stored."""
    store, reference = tmp_path / "store", tmp_path / "reference.npz"
    benchmarks = ROOT / "benchmarks"
    common = ["--dataset", "digits", "--store", str(store)]
    subprocess.run([sys.executable, str(benchmarks / "replication.py"), "train", "--models", "8", *common], check=True, timeout=600)
    subprocess.run(
        [sys.executable, str(benchmarks / "export_reference.py"), "--models", "8", "--reference", "4", "8", "--out", str(reference), *common],
        check=True, timeout=600,
    )
    exported = np.load(reference, allow_pickle=False)
    assert exported["masks"].shape == (4, 1437) and exported["reference_models"].tolist() == [4, 8]
    assert exported["train_correct"].shape == (4, 1437) and exported["test_correct"].shape == (4, 360)
    approximations = [sys.executable, str(benchmarks / "approximations.py"), "--reference-npz", str(reference), *common]
    overlapping = subprocess.run([*approximations, "--counts", "5", "--json", str(tmp_path / "x.json")], capture_output=True, text=True, timeout=600)
    assert overlapping.returncode != 0 and "would share models with the reference (models 4 on)" in overlapping.stderr
    markdown = tmp_path / "a.md"
    chosen = ["--methods", "fz", "margin", "eb", "forgetting", "nn_input", "--runs", "1", "--checkpoint-epochs", "10"]
    result = run("approximations.py", tmp_path / "a.json", "--reference-npz", str(reference), "--counts", "2", "4", "--markdown", str(markdown), *chosen, *common)
    subset = [f"{family}-{n}" for n in (2, 4) for family in ("fz", "margin", "eb")]
    rows = [(row["method"], row["target"]) for row in result["rows"]]
    assert rows == [(m, "memorization") for m in [*subset, "forgetting"]] + [(m, "influence") for m in [*subset, "nn_input"]]
    forgetting = next(row for row in result["rows"] if row["method"] == "forgetting")
    assert forgetting["cost_models"] >= 1 / 0.7 and math.isnan(forgetting["mae"] or math.nan)  # one full-data run; no mem estimate
    # the reference sets are those of the exported models' exact estimate
    mem = memorization(exported["masks"], exported["train_correct"])["mem"].to_numpy()
    assert result["r_mem"] == int((np.nan_to_num(mem, nan=-1) >= 0.25).sum()) > 0
    assert result["reference_models"] == [4, 8] and result["subset_model_seconds"] > 0
    assert set(result["goals"]) == {"memorization", "influence"} and result["goals"]["memorization"]["budget_models"] == 25
    lines = markdown.read_text().splitlines()
    assert lines[0].startswith("| method | cost (models) |")
    assert [line.split(" | ")[0][2:] for line in lines[2:]] == ["nn_input", "forgetting", *subset]  # cheapest first (0, 1.43, 2, 4)


def _benchmark(name: str):
    """benchmarks/<name>.py as a module (its functions are the statistics it reports)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _variance_benchmark():
    return _benchmark("variance")


def test_adjusted_difference_matches_interacted_least_squares() -> None:
    """Lin's estimate is the coefficient on `in` of y ~ 1 + in + Zc + in·Zc; its se is that
    coefficient's HC2 sandwich plus (β₁ − β₀)ᵀ cov(Z) (β₁ − β₀) / T, per column by lstsq."""
    rng = np.random.default_rng(1)
    n_rows, n_cols, k = 60, 4, 3
    treated = rng.random((n_rows, n_cols)) < 0.7
    z = (rng.random((n_rows, n_cols, k)) < 0.7).astype(np.float64)
    outcome = rng.random((n_rows, n_cols)) < 0.3 + 0.4 * treated + 0.25 * z[:, :, 0] * ~treated
    estimate, se = _variance_benchmark().adjusted_difference(treated, outcome, z)
    for i in range(n_cols):
        centred = z[:, i] - z[:, i].mean(axis=0)
        design = np.column_stack([np.ones(n_rows), treated[:, i], centred, treated[:, i, None] * centred])
        beta = np.linalg.lstsq(design, outcome[:, i].astype(np.float64), rcond=None)[0]
        inverse = np.linalg.inv(design.T @ design)
        leverage = np.einsum("tp,pq,tq->t", design, inverse, design)
        residual = outcome[:, i] - design @ beta
        sandwich = inverse @ (design.T * residual**2 / (1 - leverage)) @ design @ inverse
        gap = beta[2 + k :]  # treated slopes minus untreated slopes
        assert estimate[i] == pytest.approx(beta[1], abs=1e-12)
        assert se[i] == pytest.approx(np.sqrt(sandwich[1, 1] + gap @ np.cov(z[:, i].T) @ gap / n_rows), rel=1e-10)


def test_adjusted_difference_is_unbiased_and_lowers_the_variance_when_a_neighbour_matters() -> None:
    """Known exact mem: correct with probability 0.95 when in; when out, 0.2 + 0.6·z with z the
    (independently randomized, P = 0.7) membership of a neighbour, so mem = 0.95 − 0.62 = 0.33.
    Over 4,000 independent columns of 100 models: the plain difference and the adjusted one are
    both unbiased (tolerance 0.006 ≈ 5 sd of a mean of 4,000), the adjusted one has about 21%
    less variance (asymptotic 0.0068 against 0.0085; asserted ≥ 12%, the variances' sampling
    error being ~2% each), its se matches its spread within 10%, and its 95% intervals cover
    0.33 at 92.5–97.5% (the coverage's own sd is 0.35%)."""
    benchmark = _variance_benchmark()
    rng = np.random.default_rng(7)
    n_rows, n_cols, exact = 100, 4000, 0.33
    treated = rng.random((n_rows, n_cols)) < 0.7
    neighbour = rng.random((n_rows, n_cols, 1)) < 0.7
    outcome = rng.random((n_rows, n_cols)) < np.where(treated, 0.95, 0.2 + 0.6 * neighbour[:, :, 0])
    plain, _ = benchmark.adjusted_difference(treated, outcome, np.zeros((n_rows, n_cols, 0)))
    adjusted, se = benchmark.adjusted_difference(treated, outcome, neighbour.astype(np.float64))
    assert abs(plain.mean() - exact) < 0.006 and abs(adjusted.mean() - exact) < 0.006
    assert adjusted.var() < 0.88 * plain.var()
    assert np.mean(se**2) == pytest.approx(adjusted.var(), rel=0.1)
    assert 0.925 <= np.mean(np.abs(adjusted - exact) <= 1.96 * se) <= 0.975


def test_variance_benchmark_neighbours_partners_and_twins_match_brute_force() -> None:
    benchmark = _variance_benchmark()
    rng = np.random.default_rng(3)
    images, labels = rng.random((40, 1, 3, 3)), rng.integers(0, 3, 40)
    neighbours = benchmark.nearest_same_class(images, labels, 2)
    for i in range(40):
        same = [j for j in range(40) if j != i and labels[j] == labels[i]]
        distance = {j: np.sum((images[i] - images[j]) ** 2) for j in same}
        assert list(neighbours[i]) == sorted(same, key=lambda j: (distance[j], j))[:2]
    masks = rng.random((200, 30)) < 0.7
    correct = rng.random((200, 30)) < 0.3 + 0.5 * masks[:, [5]] + 0.1 * masks[:, [9]]
    examples = np.array([0, 1, 2])
    partners = benchmark.oracle_partners(masks, correct, examples, 10)
    for row, i in enumerate(examples):
        out = ~masks[:, i]
        strength = [abs(np.corrcoef(masks[out, j], correct[out, i])[0, 1]) if j != i else -1 for j in range(30)]
        # 0/1 columns with the same table tie exactly (up to the last bits): the lower index first
        assert list(partners[row]) == sorted(range(30), key=lambda j: (-round(strength[j], 12), j))[:10]
    twin = np.where(rng.random((200, 30)) < 0.8, correct, ~correct)
    twin[:, 1] = True  # constant in the twin: left out
    rho = benchmark.twin_correlation(masks, correct, twin, examples)
    expected = [np.corrcoef(correct[~masks[:, i], i], twin[~masks[:, i], i])[0, 1] for i in (0, 2)]
    assert rho["examples"] == 2 and rho["median"] == pytest.approx(np.median(expected), rel=1e-12)


def test_noise_icc_recovers_a_known_intra_class_correlation() -> None:
    """Random effects with group variance 1 and noise variance 3 (ICC exactly 0.25), groups of 2 to
    6 rows of which a fifth are invalid: over 20 columns of 3,000 groups the estimate is within
    0.02 of 0.25 (the mean's sd is about 0.004). A column without variance, or with every group cut
    below 2 valid rows, is NaN; identical rows within groups give ICC 1."""
    icc = _benchmark("noise").icc
    rng = np.random.default_rng(5)
    sizes = rng.integers(2, 7, 3000)
    groups = np.repeat(np.arange(sizes.size), sizes)
    columns = 20
    values = rng.normal(size=(sizes.size, columns))[groups] + np.sqrt(3) * rng.normal(size=(groups.size, columns))
    valid = rng.random(values.shape) < 0.8
    estimate = icc(values, valid, groups)
    assert abs(estimate.mean() - 0.25) < 0.02
    constant = np.ones((groups.size, 1))
    assert np.isnan(icc(constant, np.ones_like(constant, dtype=bool), groups)[0])
    singletons = np.zeros((groups.size, 1), dtype=bool)
    singletons[np.r_[0, np.cumsum(sizes)[:-1]]] = True  # one valid row per group
    assert np.isnan(icc(values[:, :1], singletons, groups)[0])
    copies = rng.normal(size=(sizes.size, 1))[groups]
    assert icc(copies, np.ones_like(copies, dtype=bool), groups)[0] == pytest.approx(1.0)


def test_provenance_benchmark_smoke(tmp_path: Path) -> None:
    result = run("provenance.py", tmp_path / "p.json", "--models", "4")
    assert result["nodes"] == ["measure_convergence", "measure_subset_fit", "score_memorization", "score_influence"]
    modes = ("before", "after_training_run", "after_loading_run")
    assert all(len(result[f"{mode}_seconds_per_node"]) == 4 and result[f"{mode}_seconds"] > 0 for mode in modes)
    assert result["training_records_provenance_seconds"] > 0



def test_airbench_speed_benchmark_smoke(tmp_path: Path) -> None:
    args = ("--device", "cpu", "--n-train", "32", "--n-test", "8", "--models", "1", "--epochs", "1", "--stacks", "1")
    result = run("airbench_speed.py", tmp_path / "a.json", *args)
    one = result["stacks"]["1"]
    assert result["preset_epochs"] == 16 and one["epoch_seconds_per_model"] > 0
    projected = one["preset_seconds_per_model"]
    assert one["projected_hours"] == pytest.approx({"cifar10": 2000 * projected / 3600, "cifar100": 4000 * projected / 3600})


def test_the_wheelhouse_lists_what_a_run_needs_without_torch(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "wheelhouse.py"), "--list-only", "--out", str(tmp_path)], check=True, timeout=120)
    lists = {
        kind: {line.split("==")[0].lower().replace("_", "-") for line in (tmp_path / f"{kind}.txt").read_text().split()}
        for kind in ("pure", "small", "large")
    }
    assert {"kedro", "kedro-mlflow", "mlflow", "omegaconf"} <= lists["pure"] and "pydantic-core" in lists["small"]
    assert {"numpy", "pandas", "pyarrow"} <= lists["large"]
    every = set().union(*lists.values())
    assert not {"torch", "torchvision", "kedro-viz"} & every and not any(name.startswith("nvidia") for name in every)
