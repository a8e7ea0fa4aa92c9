"""A run's live view on disk, as later readers find it: the marker that says who writes it and
whether that run still runs (the gallery of an interrupted run says so), and its removal."""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from nst_batch.tasks.output.atomic import process_alive, process_start_time
from nst_batch.tasks.output.layout import LIVE_DIR, LIVE_RUN
from nst_batch.tasks.output.storage import join, storage_for
from nst_batch.tasks.planning.jobs import Plan

STALE_AFTER_S = 120.0  # a run elsewhere whose live view was not touched for this long has ended


def write_marker(plan: Plan, finished: int, since: float, interrupted: bool = False) -> None:
    """The live view's marker (LIVE_RUN): the process writing the live view (to tell later whether
    it still runs), when the run began (``since``), how far it got, and whether it was interrupted."""
    pid = os.getpid()
    marker = {
        "pid": pid,
        "started": process_start_time(pid),
        "host": socket.gethostname(),
        "planned": len(plan.pairs),
        "finished": finished,
        "since": since,
        "updated": time.time(),
        **({"interrupted": True} if interrupted else {}),
    }
    root = plan.settings.output_root
    storage_for(root).write_bytes(join(root, LIVE_RUN), json.dumps(marker).encode(), "application/json")


def ended_run(marker: Any) -> bool:
    """Whether the run that wrote ``marker`` (live/run.json) no longer runs: its process is gone
    (this host), or it has not touched its live view for STALE_AFTER_S (another host)."""
    if not isinstance(marker, dict) or marker.get("interrupted"):
        return True
    if marker.get("host") == socket.gethostname() and isinstance(marker.get("pid"), int):
        started = marker.get("started") if isinstance(marker.get("started"), int) else None
        return not process_alive(marker["pid"], started)
    updated = marker.get("updated")
    return not isinstance(updated, int | float) or time.time() - updated > STALE_AFTER_S


def clear_ended_live_view(root: str) -> None:
    """Before a run: the live files of a run that ended without cleaning up (a kill) go, once its
    gallery has said it was interrupted (the new run's live view and final gallery follow)."""
    storage = storage_for(root)
    marker_uri = join(root, LIVE_RUN)
    try:
        if not storage.exists(marker_uri):
            return
        marker = json.loads(storage.read_bytes(marker_uri))
    except Exception:  # noqa: BLE001 - unreadable: treat as ended
        marker = None
    if ended_run(marker):
        clear_live(root)


def clear_live(root: str) -> None:
    """Remove the live files under ``root`` (and the folder, where folders exist)."""
    storage = storage_for(root)
    for uri in storage.list(join(root, LIVE_DIR)):
        storage.delete(uri)
    storage.remove_folder(join(root, LIVE_DIR))
