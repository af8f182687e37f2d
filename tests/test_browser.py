"""Kedro-Viz and the MLflow UI in a real browser (Debian's chromium, headless, driven by
Playwright), on one smoke study: what a reviewer opens after a run must show that study.

Each server is started once per module on a free port of 127.0.0.1, waited for within a
bound, and always stopped. Screenshots go to ``test-output/browser/`` (git-ignored).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: apt-get install chromium (.ci/run installs it when missing)"
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = PROJECT_ROOT / "test-output" / "browser"
BIN = Path(sys.executable).parent
# Playwright's own browser download is not used: the system chromium, with nothing that
# reaches the network on its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVER_START_S = 180  # Kedro-Viz loads the whole project first: about a minute on a busy 2-core machine
PAGE_WAIT_MS = 60_000


def free_port() -> int:
    """A free port of 127.0.0.1 below 49152 (Kedro-Viz refuses the ephemeral range above)."""
    for port in random.Random().sample(range(20000, 49000), 50):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found on 127.0.0.1 in 20000-49000")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def server(command: list[str], cwd: Path, url: str, log: Path) -> Iterator[str]:
    """Run ``command`` (its own process group) until ``url`` answers; always stop it after."""
    env = {**os.environ, "DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "true"}
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not _answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{command[0]} did not answer at {url} within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and whatever it started (its process group)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def study(smoke_run: tuple[Path, subprocess.CompletedProcess]) -> Path:
    return smoke_run[0]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    context.set_default_timeout(PAGE_WAIT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="module")
def kedro_viz(study: Path) -> Iterator[str]:
    port = free_port()
    command = [str(BIN / "kedro"), "viz", "run", "--env", "smoke", "--host", "127.0.0.1", "--port", str(port), "--no-browser"]
    with server(command, study, f"http://127.0.0.1:{port}/api/main", study / "kedro-viz.log"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def mlflow_ui(study: Path) -> Iterator[str]:
    port = free_port()
    store = f"sqlite:///{study / 'mlflow.db'}"
    command = [str(BIN / "mlflow"), "ui", "--backend-store-uri", store, "--host", "127.0.0.1", "--port", str(port)]
    with server(command, study, f"http://127.0.0.1:{port}/health", study / "mlflow-ui.log"):
        yield f"http://127.0.0.1:{port}"


def test_kedro_viz_shows_the_pipeline_and_previews_a_dataset(page: object, kedro_viz: str) -> None:
    # Kedro-Viz's first-visit tour of new features would cover the flowchart in the screenshot
    page.context.add_init_script("window.localStorage.setItem('KedroViz', JSON.stringify({showFeatureHints: false}))")
    page.goto(kedro_viz)
    page.wait_for_selector("g.pipeline-node")
    shown = set(page.locator("g.pipeline-node").all_text_contents())
    nodes = {"train_subset_models", "score_memorization", "run_removal_experiment", "plot_memorization_grid"}
    datasets = {"subset_masks", "memorization_scores", "influence_pairs", "removal_curve", "memorization_grid"}
    assert nodes | datasets <= shown, sorted(nodes | datasets - shown)

    page.get_by_text("memorization_scores", exact=True).first.click()  # the sidebar's entry
    preview = page.locator(".pipeline-metadata__preview .preview-table")
    preview.wait_for()
    page.screenshot(path=SCREENSHOTS / "kedro-viz-preview.png")
    assert {"index", "label", "mem", "mem_se"} <= set(preview.locator(".preview-table__header").all_text_contents())
    assert preview.locator(".preview-table__row").count() >= 5  # a header row and the rows previewed


def _study_runs(study: Path) -> tuple[str, object, list[str]]:
    client = MlflowClient(tracking_uri=f"sqlite:///{study / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("longtail")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return experiment.experiment_id, parent, [r.info.run_name for r in runs if r is not parent]


def test_mlflow_ui_lists_the_study_with_its_models_and_shows_a_figure(page: object, mlflow_ui: str, study: Path) -> None:
    experiment_id, parent, children = _study_runs(study)
    assert {"subset-0000", "removal-t0.30-memorization-r0", "proxy-1"} <= set(children)

    page.goto(f"{mlflow_ui}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
    parent_cell = page.locator("[role=gridcell]", has_text=parent.info.run_name)
    parent_cell.locator("button").click()  # expands the parent's child runs
    page.get_by_text("subset-0000", exact=True).wait_for()
    page.screenshot(path=SCREENSHOTS / "mlflow-runs.png")
    listed = set(page.locator("[role=gridcell] a").all_text_contents())
    assert {parent.info.run_name, "subset-0000", "removal-t0.30-memorization-r0", "proxy-1"} <= listed

    figure = "figures/memorization_grid.png"
    page.goto(f"{mlflow_ui}/#/experiments/{experiment_id}/runs/{parent.info.run_id}/artifacts/{figure}")
    image = page.locator(f"img[alt='{figure}']")
    image.wait_for()
    page.wait_for_function("image => image.complete && image.naturalWidth > 0", arg=image.element_handle())
    page.screenshot(path=SCREENSHOTS / "mlflow-figure.png")
    stored = next((study / "data" / "08_reporting" / "memorization_grid.png").glob("*/*.png"))
    assert image.evaluate("image => [image.naturalWidth, image.naturalHeight]") == list(Image.open(stored).size)


def test_the_study_report_opens_from_disk_with_its_galleries_table_and_pairs(page: object, study: Path) -> None:
    (report,) = (study / "data" / "08_reporting" / "study_report.html").glob("*/study_report.html")
    problems, fetched = [], []
    page.on("console", lambda message: problems.append(message.text) if message.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: fetched.append(request.url))
    page.goto(report.as_uri())
    page.wait_for_load_state("load")

    classes = page.locator("div.class")
    assert classes.count() == 10  # the smoke study's ten digits, each with its gallery
    for position in range(classes.count()):
        gallery = classes.nth(position).locator(":scope > .gallery img.thumb")
        assert gallery.count() == 12
        assert gallery.evaluate_all("images => images.every(image => image.complete && image.naturalWidth > 0)")

    page.select_option("#filter-class", "3")
    shown = page.locator("#items tbody tr td:nth-child(2)").all_text_contents()
    assert shown and set(shown) == {"3"}

    example = page.locator("button.example:not([data-pairs='0'])").first
    panel = page.locator(f"#pairs-{example.get_attribute('data-train')}")
    assert panel.is_hidden()
    example.click()
    panel.wait_for(state="visible")
    pairs = panel.locator(".pair img.thumb")
    assert pairs.count() == int(example.get_attribute("data-pairs")) > 0
    assert pairs.evaluate_all("images => images.every(image => image.complete && image.naturalWidth > 0)")
    assert panel.locator(".pair").first.inner_text().count("infl") == 1
    page.screenshot(path=SCREENSHOTS / "study-report.png")
    assert problems == []
    assert [url for url in fetched if not url.startswith("data:")] == [report.as_uri()]  # nothing but the file itself
