"""Unique save versions for drivers that share one project."""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest


from longtail.io.versions import claim_version

VERSION = "2026-11-26T00.03.27.525Z"


def test_a_claimed_version_moves_to_the_next_free_millisecond(tmp_path: Path) -> None:
    assert claim_version(tmp_path, VERSION) == VERSION
    assert claim_version(tmp_path, VERSION) == "2026-11-26T00.03.27.526Z"
    assert claim_version(tmp_path, "2026-11-26T00.03.27.999Z") == "2026-11-26T00.03.27.999Z"
    assert claim_version(tmp_path, "2026-11-26T00.03.27.999Z") == "2026-11-26T00.03.28.000Z"
    assert claim_version(tmp_path, VERSION) == "2026-11-26T00.03.27.527Z"


def test_processes_claiming_one_version_at_once_each_get_their_own(tmp_path: Path) -> None:
    with ProcessPoolExecutor(max_workers=4) as pool:
        claimed = list(pool.map(claim_version, [tmp_path] * 16, [VERSION] * 16))
    assert len(set(claimed)) == 16
    assert sorted(claimed)[0] == VERSION


def test_a_project_where_claims_cannot_be_written_keeps_kedros_version(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "sessions").write_text("a file where the claims folder would be")
    assert claim_version(tmp_path / "sessions", VERSION) == VERSION
    assert "cannot claim save version" in caplog.text


def test_claims_older_than_a_day_are_removed(tmp_path: Path) -> None:
    old = tmp_path / "2020-01-01T00.00.00.000Z"
    old.touch()
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    claim_version(tmp_path, VERSION)
    assert sorted(p.name for p in tmp_path.iterdir()) == [VERSION]


def test_two_sessions_started_in_one_millisecond_both_save(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_study import run_study  # noqa: PLC0415

    # Both drivers read the same clock millisecond, as two `kedro run` started at once can.
    monkeypatch.setattr("kedro.framework.session.session.generate_timestamp", lambda: VERSION)
    run_study(project, pipeline_names=["ingestion"])
    run_study(project, pipeline_names=["ingestion"])
    saved = sorted(p.name for p in (project / "data" / "03_primary" / "examples.parquet").iterdir())
    assert saved == [VERSION, "2026-11-26T00.03.27.526Z"]
