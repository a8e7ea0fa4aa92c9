"""What a plan holds: the batch's work as the planner hands it on (``planning.plan`` makes it).

A module of its own so that the rings' consumers (a pair's production, the presenting of a run)
take the plan's types without importing the planner. Small, JSON-friendly values only: these
travel between Prefect tasks and Dask workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nst_batch.core import StyleConfig
from nst_batch.tasks.output.layout import OutputLayout
from nst_batch.tasks.planning.runtime import RuntimeOptions

if TYPE_CHECKING:
    from nst_batch.tasks.planning.manifest import ManifestProblem


@dataclass(frozen=True)
class StyleRef:
    name: str
    uri: str


@dataclass(frozen=True)
class MaskRef:
    """A pair's mask: the image's URI and what its colours take, ``((colour, style name or "keep"), ...)``
    in the manifest's order (see nst_batch.tasks.planning.masks)."""

    uri: str
    styles: tuple[tuple[str, str], ...]

    def mapping(self) -> dict[str, str]:
        return dict(self.styles)


@dataclass(frozen=True)
class PairJob:
    name: str  # output name without extension, unique in the batch
    content_uri: str
    styles: tuple[StyleRef, ...]
    config: StyleConfig  # the merged, validated parameters (pairs with equal ones share one object)
    origin: str = ""  # the manifest field it comes from (contents.0, pairs.3), for messages
    # A point of a sweep: the swept parameters' values here (in the sweep's order), and the name
    # the pair would have without the sweep, which every point of it shares. Empty: no sweep.
    sweep: dict[str, Any] = field(default_factory=dict)
    sweep_of: str = ""
    named: bool = False  # its manifest gave the name (`name:`): the user's, never changed by the tool
    mask: MaskRef | None = None  # styles by region; None: the whole photo takes the styles

    def style_names(self) -> list[str]:
        return [s.name for s in self.styles]

    def blend(self) -> list[float]:
        """Each style's weight in the blend, as the summary and the gallery say it."""
        return [round(w, 4) for w in self.config.blend_weights(len(self.styles))]


@dataclass(frozen=True)
class BatchSettings:
    """What every pair of a run shares besides its parameters: where it writes, and how and where
    it runs (:class:`RuntimeOptions`, the manifest's runtime keys)."""

    output_root: str
    format: str
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    run_id: str = ""  # the flow run's id (set by the flow): each sidecar records the run that wrote it
    verify: bool = False  # a skip hashes the output against its sidecar (else: size and header only)
    keep_earlier: bool = False  # a pair redone with other parameters or inputs keeps its previous files under earlier/
    manifest: str = (
        ""  # the manifest planned: each sidecar records it (who owns a name, nst_batch.tasks.running.ownership)
    )

    @property
    def layout(self) -> OutputLayout:
        return OutputLayout(self.output_root, self.format)

    def output_uri(self, name: str) -> str:
        return self.layout.output(name)

    def sidecar_uri(self, name: str) -> str:
        return self.layout.sidecar(name)


@dataclass(frozen=True)
class Plan:
    source: str
    settings: BatchSettings
    pairs: tuple[PairJob, ...]
    styles: dict[str, str] = field(default_factory=dict)  # name -> URI
    # What the plan left out or merged without it being a problem, one line each: a listed
    # folder's files that are not images it can read, a photo listed twice. Every command says them.
    notes: tuple[ManifestProblem, ...] = ()

    def describe(self) -> dict[str, Any]:
        """The plan as JSON: each pair with every parameter it runs with (the defaults included)."""
        full: dict[int, dict[str, Any]] = {}  # pairs share their config: each is written out once
        for p in self.pairs:
            if id(p.config) not in full:
                full[id(p.config)] = p.config.to_json()
        return {
            "manifest": self.source,
            "output": self.settings.output_root,
            "styles": self.styles,
            "pairs": [
                {
                    "name": p.name,
                    "output": self.settings.output_uri(p.name),
                    "content": p.content_uri,
                    "styles": [s.name for s in p.styles],
                    "parameters": full[id(p.config)],
                }
                for p in self.pairs
            ],
        }
