"""`kedro run` reports the user's mistakes as one readable message, writes nothing."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest


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
    make_project: Callable[[str], Path], kedro_cli: Callable[..., subprocess.CompletedProcess], params: str, expected: list[str]
) -> None:
    root = make_project("cli")
    result = kedro_cli(root, "run", "--env", "smoke", "--params", params)
    assert result.returncode == 1
    assert "Error:" in result.stderr
    for text in expected:
        assert text in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "╭" not in result.stderr  # no rich traceback box either
    assert written_files(root) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--pipelines", "scorng"],
            "Error: unknown pipeline 'scorng' (did you mean 'scoring'?); the pipelines: __default__, approximation, diagnostics, "
            "export, ingestion, removal, reporting, rescoring, sampling, scoring, training",
        ),
        (
            ["--env", "smok"],
            "Error: unknown environment 'smok' (did you mean 'smoke'?); the environments under conf/: base, "
            "cifar10, cifar100, fashion_mnist, local, mnist, smoke",
        ),
    ],
)
def test_a_mistyped_pipeline_or_environment_gives_one_line_naming_what_exists(
    make_project: Callable[[str], Path], kedro_cli: Callable[..., subprocess.CompletedProcess], args: list[str], expected: str
) -> None:
    """Before: a 118-line traceback ending in an ImportError of 'longtail.pipelines.scorng', or
    one ending in MissingConfigException."""
    root = make_project("typo")
    result = kedro_cli(root, "run", *args)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == expected
    assert "Traceback" not in result.stdout + result.stderr and "╭" not in result.stderr
    assert written_files(root) == []


def test_the_pipelines_named_are_those_the_registry_registers() -> None:
    from kedro.framework.project import configure_project  # noqa: PLC0415

    from longtail.pipeline_registry import pipeline_names, register_pipelines  # noqa: PLC0415

    configure_project("longtail")
    assert pipeline_names() == ["__default__", *sorted(set(register_pipelines()) - {"__default__"})]


# What a run printed before the project silenced or fixed them: third-party warnings about the
# libraries' own code, Kedro replacing catalog entries, and the telemetry notice.
NOISE = (
    "register_new_resolver",
    "Add type hints to the `predict` method",
    "Replacing dataset",
    "telemetry",
    "Failed to send",
    "Warning:",
)


def test_a_run_prints_the_studys_own_lines_and_no_library_noise(smoke_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    output = smoke_run[1].stdout + smoke_run[1].stderr
    log = (smoke_run[0] / "longtail.log").read_text()
    assert "models 24/24" in output and "Pipeline execution completed successfully" in log
    # the log file is the project's: the browser tests' `kedro viz build` of the same project adds
    # to it, and kedro-viz's own import warns (FastAPI deprecation) before any project setting loads
    lines = [line for line in (output + log).splitlines() if "site-packages/kedro_viz/" not in line]
    noisy = [line for line in lines if any(noise in line for noise in NOISE)]
    assert noisy == []


# Kedro's lines for every dataset and node: the log file's, not the console's
CHATTER = ("Loading data from", "Saving data to", "Running node", "Completed node", "out of", "Using '")


def test_the_console_shows_progress_and_ends_with_the_studys_summary(smoke_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    root, result = smoke_run
    console = [line.rstrip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert [line for line in console if any(words in line for words in CHATTER)] == []
    log = (root / "longtail.log").read_text()
    assert all(words in log for words in CHATTER[:4])
    assert any("models 24/24 (" in line and "s left)" in line for line in console)  # the progress stays

    lines = result.stdout.rstrip().splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("digits · 24 × mlp 64 · seed 0: done in "))
    summary = lines[start:]
    assert len(summary) <= 10, summary
    text = "\n".join(summary)
    assert "memorized: " in text and " of 1,437 training examples (mem ≥ 0.25, q ≤ 0.1)" in text
    assert "subset models: mean test accuracy " in text and "pairs reported: " in text
    (report,) = [line.split("report: ", 1)[1] for line in summary if "report: " in line]
    assert (root / report).is_file() and report.startswith("data/08_reporting/study_report.html/")
    assert "MLflow: make mlflow-ui, then http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning" in text
    assert "log: longtail.log" in text
