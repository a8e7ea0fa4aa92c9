"""Watching a run: each running pair's current image and progress, and a gallery that shows them.

- :class:`LivePair` (in the pair's task): every ``every_s`` seconds at most, the best image so far
  (a 256-px JPEG) and the pair's progress go to ``live/<name>.jpg`` and ``live/<name>.json`` under
  the output root; they are removed when the pair ends (its thumbnail takes over).
- :class:`LiveGallery` (in the flow): rewrites ``index.html`` while the pairs run, from the plan,
  the pairs finished so far and the live files: pending, running (with the live image and its
  progress) and finished cells, in a page that reloads itself. The final gallery, written after
  the summary, does not reload.

Watching must never cost a pair: every failure here is logged once and the run goes on without
it, and the time spent is counted (``seconds``) so a run can say what the view cost. Both pace
themselves: the gallery waits 50x as long as its last rendering took (a 10,000-pair page is
rendered less often than a 10-pair one), so it stays under 2 % of one core.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from nst_batch.core import StepInfo, WantsImages
from nst_batch.tasks.output.layout import live_image, live_state
from nst_batch.tasks.output.storage import join, storage_for
from nst_batch.tasks.pair.records import PairRow
from nst_batch.tasks.planning.jobs import BatchSettings, Plan
from nst_batch.tasks.presenting.gallery_page import SidecarCell
from nst_batch.tasks.presenting.run_marker import clear_live, write_marker

LOG = logging.getLogger("nst.live")


class LivePair(WantsImages):
    """An ``on_step`` callback publishing one pair's current image and progress."""

    def __init__(
        self, name: str, settings: BatchSettings, every_s: float = 5.0, content: str = "", style: str = ""
    ) -> None:
        self.name, self.root, self.every_s = name, settings.output_root, every_s
        self.content, self.style = content, style  # where an interrupted run's gallery puts this pair
        self.last = -float("inf")
        self.seconds = 0.0  # spent publishing
        self.latest: bytes | None = None  # the last JPEG published, for other viewers (Prefect artifacts)
        self.broken = False
        self.published = False

    def __call__(self, step: StepInfo) -> None:
        now = time.monotonic()
        if self.broken or step.image is None or (now - self.last < self.every_s and not step.scale_done):
            return
        self.last = now
        self._guarded(self._publish, step)
        self.seconds += time.monotonic() - now

    def _publish(self, step: StepInfo) -> None:
        from nst_batch.tasks.pair.image_files import thumbnail

        assert step.image is not None
        self.latest = thumbnail(step.image)
        state = {
            "name": self.name,
            "status": "running",
            "progress": round(step.progress, 4),
            "scale": step.scale_index + 1,
            "scales": step.num_scales,
            "iteration": step.iteration,
            "size": [step.width, step.height],
            "loss": (step.losses or {}).get("total"),
            "updated": time.time(),
            "content": self.content,
            "style": self.style,
        }
        storage = storage_for(self.root)
        storage.write_bytes(join(self.root, live_image(self.name)), self.latest, "image/jpeg")
        storage.write_bytes(join(self.root, live_state(self.name)), json.dumps(state).encode(), "application/json")
        self.published = True

    def finish(self) -> None:
        """The pair is done: its live files go (its output and thumbnail are the record)."""
        if not self.published:
            return
        began = time.monotonic()
        storage = storage_for(self.root)
        for rel in (live_state(self.name), live_image(self.name)):
            self._guarded(storage.delete, join(self.root, rel))
        self.seconds += time.monotonic() - began

    def _guarded(self, action: Any, *args: Any) -> None:
        try:
            action(*args)
        except Exception as exc:  # noqa: BLE001 - a view that cannot be written must not fail the pair
            if not self.broken:
                LOG.warning("live view of %s: %s; the pair goes on without it", self.name, exc)
            self.broken = True


class LiveGallery:
    """Rewrites the gallery while the pairs run, in a thread of the flow."""

    def __init__(self, plan: Plan, reload_s: int = 5, pace: float = 50.0, min_wait_s: float = 2.0) -> None:
        self.plan, self.reload_s, self.pace, self.min_wait_s = plan, reload_s, pace, min_wait_s
        self.finished: dict[str, PairRow] = {}
        self.since = time.time()  # when the run began: the sidecars written since are its own
        self._sidecars: dict[str, SidecarCell | None] = {}  # the finished pairs' cells, read once
        self.seconds = 0.0  # spent rendering
        self.renders = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nst-live-gallery", daemon=True)
        self._failed = False

    def __enter__(self) -> LiveGallery:
        self._thread.start()
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        root = self.plan.settings.output_root
        try:
            if kind is None:  # a normal end: the final gallery follows; no live files, no empty live/
                clear_live(root)
            else:  # Ctrl-C, SIGTERM, a crash: the page says so now, without a refresh
                from nst_batch.tasks.presenting.gallery import build_gallery

                with self._lock:
                    finished = len(self.finished)
                write_marker(self.plan, finished, self.since, interrupted=True)
                build_gallery(root)
        except Exception as error:  # noqa: BLE001 - the run's own ending matters more
            LOG.warning("live gallery: %s", error)

    def add(self, rows: list[PairRow]) -> None:
        with self._lock:
            self.finished.update({r.name: r for r in rows})

    def render_once(self) -> None:
        from nst_batch.tasks.presenting.gallery import build_live_gallery

        began = time.monotonic()
        with self._lock:
            finished = dict(self.finished)
        try:
            write_marker(self.plan, len(finished), self.since)
            build_live_gallery(self.plan, finished, self.reload_s, sidecars=self._sidecars)
            self.renders += 1
        except Exception as exc:  # noqa: BLE001 - the run goes on; the final gallery is written anyway
            if not self._failed:
                LOG.warning("live gallery: %s; the run goes on without it", exc)
            self._failed = True
        self.seconds += time.monotonic() - began

    def _loop(self) -> None:
        while not self._stop.is_set():
            took = self.seconds
            self.render_once()
            took = self.seconds - took
            self._stop.wait(max(self.min_wait_s, self.pace * took))
