"""Every name a run writes under its output root, in one place: outputs and their sidecars, the
thumbnails, the live view, the style-target cache, the summary and the gallery, and the names a
pair may therefore not take.

Names here are relative to the output root (the gallery links with them); :class:`OutputLayout`
joins them to a root (a folder or ``s3://bucket/prefix``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from nst_batch.tasks.output.storage import join

GALLERY_NAME = "index.html"
GALLERY_MARK = (
    '<meta name="generator" content="nst-batch">'  # in every gallery page the tool writes: it may replace those
)
SUMMARY_NAME = "summary.json"
RUNS_DIR = "runs"  # every run's summary, kept: runs/<started, UTC>-<flow run id>.json
EARLIER_DIR = "earlier"  # with keep_earlier: a redone pair's previous output and sidecar
# A pair may not be called so (case-insensitively, for case-insensitive file systems): its sidecar
# would be overwritten by the summary, its output by the gallery.
RESERVED_NAMES = frozenset({"summary", "index"})
CACHE_PARENT = ".cache"
CACHE_DIR = f"{CACHE_PARENT}/style-targets"
THUMBS_DIR = "thumbs"
ORIGINALS_DIR = "thumbs/originals"
LIVE_DIR = "live"
LIVE_RUN = f"{LIVE_DIR}/run.json"  # the run in progress: who writes the live view, how far it got
PROBE_PREFIX = ".nst-cluster-check-"  # a cluster check's probe file, written and removed by each worker
WRITE_PROBE = ".nst-write-check"  # proves a root takes new files before any work; removed at once


def run_summary_name(started_at: str, run_id: str) -> str:
    """One run's summary in the history: sorted by name is sorted by start."""
    return f"{RUNS_DIR}/{_stamp(started_at)}-{(run_id or 'local')[:8]}.json"


def earlier_name(name: str, finished_at: str, extension: str) -> str:
    """A redone pair's previous file, named by when it was made: ``earlier/NAME.20261205T020312Z.png``."""
    return f"{EARLIER_DIR}/{name}.{_stamp(finished_at) or 'unknown'}.{extension}"


def _stamp(iso: str) -> str:
    """An ISO 8601 UTC time as a file name's part: ``2026-12-05T02:03:12+00:00`` -> ``20261205T020312Z``."""
    return iso.replace("-", "").replace(":", "").replace("+00:00", "Z")


def sidecar_name(name: str) -> str:
    return f"{name}.json"


def output_file(name: str, format: str) -> str:
    return f"{name}.{format}"


def cache_entry_name(key: str) -> str:
    """One style's targets in the cache, by their key."""
    return f"{CACHE_DIR}/{key}.pt"


def pair_thumb(name: str) -> str:
    """A pair's thumbnail."""
    return f"{THUMBS_DIR}/{name}.jpg"


def original_thumb(uri: str) -> str:
    """The thumbnail of an input (a photo or a painting)."""
    return f"{ORIGINALS_DIR}/{hashlib.sha256(uri.encode()).hexdigest()[:20]}.jpg"


def live_image(name: str) -> str:
    """A running pair's current image."""
    return f"{LIVE_DIR}/{name}.jpg"


def live_state(name: str) -> str:
    """A running pair's progress."""
    return f"{LIVE_DIR}/{name}.json"


@dataclass(frozen=True)
class OutputLayout:
    """The names above under one output root."""

    root: str
    format: str = "png"

    def uri(self, relative: str) -> str:
        return join(self.root, relative)

    def output(self, name: str) -> str:
        return self.uri(output_file(name, self.format))

    def sidecar(self, name: str) -> str:
        return self.uri(sidecar_name(name))
