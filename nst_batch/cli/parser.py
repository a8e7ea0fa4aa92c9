"""The ``nst`` parser: its commands and options. The style options and their help and defaults are
generated from :class:`nst_batch.core.StyleConfig`; the runtime options' from RuntimeOptions.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any, NoReturn

from nst_batch.cli.errors import BadInput
from nst_batch.core.config import StyleConfig
from nst_batch.core.errors import CoreError, did_you_mean
from nst_batch.tasks.errors import InputError

DEFAULTS = StyleConfig()


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # --iteration is a typo, not --iterations
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        raise BadInput(_with_suggestions(message, self))


def _with_suggestions(message: str, parser: argparse.ArgumentParser) -> str:
    """argparse's message, with the nearest known option or command for each unknown one."""
    import re

    known = _option_strings(parser)
    unknown = re.match(r"unrecognized arguments: (.*)", message)
    if unknown:
        hints = [
            word + (did_you_mean(word.split("=")[0], known) if word.startswith("-") else "")
            for word in unknown.group(1).split()
        ]
        return f"unrecognized arguments: {' '.join(hints)}"
    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        return message + did_you_mean(choice.group(1), [c.strip(" '") for c in choice.group(2).split(",")])
    return message


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every --option of ``parser`` and of its subcommands."""
    found: list[str] = []
    for action in parser._actions:
        found += [o for o in action.option_strings if o.startswith("--")]
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _option_strings(sub)
    return sorted(set(found))


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def parse_scales(text: str) -> tuple[float, ...]:
    """``--scales``: the core's one grammar (:func:`nst_batch.core.config.scales_from`)."""
    from nst_batch.core.config import scales_from

    try:
        return scales_from(text)
    except CoreError as exc:
        # argparse says "argument --scales: " first
        raise argparse.ArgumentTypeError(
            str(exc).replace("scales N (a count)", "N (a count of scales)").replace("scales must be", "must be")
        ) from None


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


# How a setting's text becomes its value where its type alone does not say (a tuple's items).
_PARSERS: dict[str, Callable[[str], Any]] = {
    "scales": parse_scales,
    "iterations": _ints,
    "style_blend": _floats,
    "style_layer_weights": _floats,
    "content_layers": _names,
    "style_layers": _names,
}


def _add_style_options(p: argparse.ArgumentParser) -> None:
    """One option per :class:`StyleConfig` field, its help and default from the field: written
    once, in the core, where the manifest's schema reads them too."""
    import typing

    hints = typing.get_type_hints(StyleConfig)
    flags = {f.name: "--" + f.name.replace("_", "-") for f in fields(StyleConfig)}
    g = p.add_argument_group("style transfer")
    for f in fields(StyleConfig):
        default = getattr(DEFAULTS, f.name)
        text = said_as_flags(f.metadata["help"], flags)
        shown = f.metadata.get("shown", _show(default))
        if hints[f.name] is bool:  # a switch away from the default
            flag = flags[f.name] if not default else f"--no-{f.name.replace('_', '-')}"
            g.add_argument(
                flag,
                dest=f.name,
                action="store_false" if default else "store_true",
                help=said_as_flags(f.metadata["off"], flags) if default else text,
            )
            continue
        choices = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is typing.Literal else None
        if f.name == "init":  # --init-image implies --init image
            g.add_argument(
                "--init",
                choices=choices,
                default=None,
                help=f"{text} (default {default}; image when --init-image is given)",
            )
            g.add_argument("--init-image", default=None, help="image to start from (implies --init image)")
            continue
        kind: Callable[[str], Any] = _PARSERS.get(f.name, hints[f.name] if hints[f.name] in (int, float) else str)
        g.add_argument(
            flags[f.name],
            type=str if choices else kind,
            choices=choices,
            default=default,
            help=f"{text} (default {shown})",
        )


def said_as_flags(text: str, flags: dict[str, str], named: Iterable[str] = ()) -> str:
    """A text in setting names, said as this command's flags: a name marked `` `size` ``, a name in
    ``named`` (the settings an error lists), and any name with an underscore (it cannot be an
    ordinary word; "size" can)."""
    import re

    named = set(named)
    for name, flag in sorted(flags.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(f"`{name}`", flag)
        if name in named or "_" in name:
            text = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", flag, text)
    return text


def _add_runtime_options(p: argparse.ArgumentParser) -> None:
    """One flag per runtime setting of one image (RuntimeOptions: its help, default and range are
    written there once), then nst stylize's own."""
    import typing

    from nst_batch.tasks.planning.runtime import RuntimeOptions

    hints = typing.get_type_hints(RuntimeOptions)
    g = p.add_argument_group("runtime")
    for f in fields(RuntimeOptions):
        meta, flag = f.metadata, "--" + f.name.replace("_", "-")
        if not meta["one_image"]:
            continue
        if hints[f.name] is bool:
            g.add_argument(flag, action="store_true", help=meta["help"])
            continue
        span = (
            f", {meta['low']}..{meta['high']}"
            if meta["low"] is not None and meta["high"] is not None and not meta["auto"]
            else ""
        )
        shown = meta["shown"] or (f"{f.default:,}" if isinstance(f.default, int) else f.default)
        kind = _RUNTIME_PARSERS.get(f.name, int if hints[f.name] is int else str)
        g.add_argument(
            flag,
            type=kind,
            default=f.default,
            choices=meta["choices"] or None,
            metavar="N" if kind is not str else None,
            help=f"{meta['help']}{span} (default {shown})",
        )
    g.add_argument(
        "--save-every",
        type=int,
        default=0,
        metavar="N",
        help="write the best image so far to --output every N iterations, so Ctrl-C or a crash keeps it (default 0: "
        "only at the end)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress output")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nst", description="Neural style transfer (Gatys et al.) for photo collections.")
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="show the version (and the commit of a checkout) and exit"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser(
        "stylize", help="stylize one content image", description="Repaint CONTENT in the style of STYLE(s)."
    )
    p.add_argument("content", help="content image (photo)")
    p.add_argument("styles", nargs="+", metavar="style", help="style image(s) (paintings)")
    p.add_argument("-o", "--output", required=True, help="output image: .png, .jpg/.jpeg or .webp")
    p.add_argument("--metadata", default=None, help="write the run's metadata as JSON here")
    p.add_argument(
        "--mask",
        default=None,
        metavar="FILE",
        help="styles by region: an image of the photo's aspect ratio whose colours --mask-styles maps to styles or "
        "keep",
    )
    p.add_argument(
        "--mask-styles",
        type=_mask_styles,
        default=None,
        metavar="COLOUR=STYLE,...",
        help="what each colour of --mask takes: a style's file name without extension (or its position 1, 2, ...) or "
        "keep "
        "(the photo stays itself), e.g. '#ff0000=starry_night,#000000=keep'",
    )
    _add_style_options(p)
    _add_runtime_options(p)

    v = sub.add_parser(
        "validate",
        help="check a manifest and print the expanded plan",
        description="Check MANIFEST without running it: its schema, style names, globs, every input's header, the "
        "output root's write access (and, with --dask-address, what the cluster's workers see); then "
        "print the pairs it expands to, with the parameters that differ from the defaults. Exit 0 when "
        "it would run, 2 with one line per problem.",
    )
    v.add_argument("manifest", help="manifest path or s3:// URI")
    v.add_argument("--output", default=None, help="override the manifest's output root")
    v.add_argument("--json", action="store_true", help="print the plan as JSON")
    v.add_argument(
        "--decode",
        action="store_true",
        help="also decode every input image (one at a time, at the size its pairs use), so a corrupt or truncated "
        "photo "
        "is caught before a run starts; without it only headers are read",
    )
    v.add_argument(
        "--dask-address",
        default=None,
        help="also check that this Dask cluster's workers see every input and the output",
    )

    r = sub.add_parser(
        "run",
        help="run the stylize-batch flow on a manifest, in this process",
        description="Run the stylize-batch flow on MANIFEST in this process (with a temporary local Prefect "
        "server unless PREFECT_API_URL is set): style targets once per style, every pair not already "
        "done, outputs, sidecars, summary.json and index.html under the output root.",
    )
    r.add_argument("manifest", help="manifest path or s3:// URI")
    r.add_argument(
        "--output", default=None, help="override the manifest's output root (a folder or s3://bucket/prefix)"
    )
    r.add_argument(
        "--runner",
        choices=("threads", "dask"),
        default=None,
        help="task runner (default threads, or $NST_TASK_RUNNER; dask when --dask-address is given)",
    )
    r.add_argument("--dask-address", default=None, help="an existing Dask scheduler, e.g. tcp://host:8786")
    r.add_argument(
        "--dask-workers", type=_dask_workers, default=None, help="worker processes of a local Dask cluster (1..256)"
    )
    r.add_argument("--force", action="store_true", help="redo pairs and style targets even when current")
    r.add_argument(
        "--verify",
        action="store_true",
        help="before skipping a finished pair, hash its output against its sidecar (by default: its size and header)",
    )
    r.add_argument("--summary-json", default=None, help="also write the run's summary JSON to this local path")
    r.add_argument(
        "-v", "--verbose", action="store_true", help="show Prefect's own log lines (INFO), not only its warnings"
    )

    gal = sub.add_parser(
        "gallery",
        help="rebuild index.html at an output root from its sidecars",
        description="Rebuild OUTPUT/index.html from the sidecars there (local folder or s3://bucket/prefix), "
        "without running anything: for a root that several runs wrote, or after a crash.",
    )
    gal.add_argument("output", help="output root (a folder or s3://bucket/prefix)")

    runs = sub.add_parser(
        "runs",
        help="list the runs recorded at an output root",
        description="List every run recorded at OUTPUT (a folder or s3://bucket/prefix): when it started, how "
        "long it took, its counts, its Prefect flow run and manifest, and the first reason of its "
        "failures. Each run keeps its summary in OUTPUT/runs/; summary.json is the latest.",
    )
    runs.add_argument("output", help="output root (a folder or s3://bucket/prefix)")

    # Listed for --help only: main() hands ``nst bench ...`` to the benchmark's own parser.
    sub.add_parser("bench", help="benchmark speed, quality and memory side by side with pastiche (nst bench --help)")
    return parser


class _Version(argparse.Action):
    """``--version``, worked out only when asked (it may run git)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(f"nst {_version()}")
        parser.exit()


def _version() -> str:
    """The installed version, and the commit when it runs from a git checkout (an editable install)."""
    from importlib import metadata

    try:
        version = metadata.version("nst-batch")
    except metadata.PackageNotFoundError:
        version = "unknown (not installed)"
    commit = _commit()
    return f"{version} (commit {commit})" if commit else version


def _commit() -> str:
    """The checkout's commit (with ``+changes`` when the tree differs from it), or '' outside one."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return ""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    if head.returncode != 0:
        return ""
    return head.stdout.strip() + ("+changes" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def config_from_args(args: argparse.Namespace) -> StyleConfig:
    values = {f.name: getattr(args, f.name) for f in fields(StyleConfig) if hasattr(args, f.name)}
    values["init"] = _init_mode(args)
    return StyleConfig(**values)


def _init_mode(args: argparse.Namespace) -> str:
    """``--init-image`` implies ``--init image``; with another ``--init`` it is a contradiction."""
    if getattr(args, "init_image", None) is None:
        return args.init or DEFAULTS.init
    if args.init not in (None, "image"):
        raise BadInput(f"--init-image starts from that image, but --init {args.init} was given: drop one of them")
    return "image"


def _threads(text: str) -> int:
    from nst_batch.tasks.pair.threads import parse_threads

    try:
        return parse_threads(text, "--threads")
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--threads ")) from None


# Runtime settings read by a parser of their own (the range check stays RuntimeOptions').
_RUNTIME_PARSERS: dict[str, Callable[[str], Any]] = {"threads": _threads}


def _dask_workers(text: str) -> int:
    from nst_batch.tasks.running.runners import dask_workers

    try:
        return dask_workers(text, "--dask-workers")
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--dask-workers ")) from None


def _mask_styles(text: str) -> dict[str, str]:
    from nst_batch.tasks.planning.masks import mask_styles_from_text

    try:
        return mask_styles_from_text(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
