"""Save versions that two drivers on one project can never share.

Kedro names every versioned dataset's save folder after the session id, a timestamp to the
millisecond. Shards let several ``kedro run`` drivers share one project and store, and two
drivers started in the same millisecond would then write into the same version folders: the
second stops at its first save ("must not exist if versioning is enabled"). Kedro reads the save
version from the session store, so the store is where a version is made unique.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from kedro.framework.session.store import BaseSessionStore
from kedro.io.core import VERSION_FORMAT

CLAIMS_KEPT_FOR = timedelta(days=1)

logger = logging.getLogger(__name__)


def _parse(version: str) -> datetime:
    # Kedro drops the last three digits of the microseconds: put them back to parse.
    return datetime.strptime(version[:-1] + "000Z", VERSION_FORMAT).replace(tzinfo=timezone.utc)


def _format(moment: datetime) -> str:
    text = moment.strftime(VERSION_FORMAT)
    return text[:-4] + text[-1:]


def claim_version(claims: Path, version: str) -> str:
    """``version``, or the first later millisecond no other process has claimed in ``claims``.

    A claim is a file created with O_EXCL, which exactly one process can win, also on a shared
    network file system that honours it (NFSv3 and later). Claims older than a day are removed:
    a later session's clock reading is later than theirs, so they can no longer clash.
    """
    moment = _parse(version)
    try:
        claims.mkdir(parents=True, exist_ok=True)
        while True:
            candidate = _format(moment)
            try:
                os.close(os.open(claims / candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                moment += timedelta(milliseconds=1)
                continue
            _remove_old_claims(claims)
            return candidate
    except OSError as error:  # a read-only project (e.g. a study opened for viewing) saves nothing
        logger.warning("cannot claim save version %s in %s (%s); using it unclaimed", version, claims, error)
        return version


def _remove_old_claims(claims: Path) -> None:
    oldest = time.time() - CLAIMS_KEPT_FOR.total_seconds()
    for claim in claims.iterdir():
        try:
            if claim.stat().st_mtime < oldest:
                claim.unlink()
        except FileNotFoundError:  # another driver removed it first
            pass


class UniqueVersionStore(BaseSessionStore):
    """A session store whose ``session_id`` (Kedro's save version) is claimed in ``path``,
    the project's ``sessions`` folder unless ``SESSION_STORE_ARGS`` names another."""

    def __init__(self, path: str, session_id: str):
        super().__init__(path, claim_version(Path(path), session_id))

    def __setitem__(self, key: str, value: Any) -> None:
        # KedroSession.create writes its own timestamp here; the claimed one replaces it.
        super().__setitem__(key, self._session_id if key == "session_id" else value)
