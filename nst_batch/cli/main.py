"""The ``nst`` command line. Defaults are read from :class:`nst_batch.core.StyleConfig`, never repeated.

Exit codes: 0 success, 1 the run failed, 2 bad input (a one-line message on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, NoReturn

from nst_batch.cli.errors import BadInput, CliError
from nst_batch.core.config import StyleConfig
from nst_batch.core.errors import ConfigError, CoreError, WeightsError, did_you_mean
from nst_batch.tasks.basics import json_bytes, plural
from nst_batch.tasks.errors import InputError, ManifestError, TaskError
from nst_batch.tasks.pair.records import Failure, RunSummary

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
_DEFAULTS = StyleConfig()


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
        hints = [word + (did_you_mean(word.split("=")[0], known) if word.startswith("-") else "") for word in unknown.group(1).split()]
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
        raise argparse.ArgumentTypeError(str(exc).replace("scales N (a count)", "N (a count of scales)").replace("scales must be", "must be")) from None


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


# How a setting's text becomes its value where its type alone does not say (a tuple's items).
_PARSERS: dict[str, Callable[[str], Any]] = {
    "scales": parse_scales, "iterations": _ints, "style_blend": _floats, "style_layer_weights": _floats,
    "content_layers": _names, "style_layers": _names,
}


def _add_style_options(p: argparse.ArgumentParser) -> None:
    """One option per :class:`StyleConfig` field, its help and default from the field: written
    once, in the core, where the manifest's schema reads them too."""
    import typing

    hints = typing.get_type_hints(StyleConfig)
    flags = {f.name: "--" + f.name.replace("_", "-") for f in fields(StyleConfig)}
    g = p.add_argument_group("style transfer")
    for f in fields(StyleConfig):
        default = getattr(_DEFAULTS, f.name)
        text = _said_as_flags(f.metadata["help"], flags)
        shown = f.metadata.get("shown", _show(default))
        if hints[f.name] is bool:  # a switch away from the default
            flag = flags[f.name] if not default else f"--no-{f.name.replace('_', '-')}"
            g.add_argument(flag, dest=f.name, action="store_false" if default else "store_true",
                           help=_said_as_flags(f.metadata["off"], flags) if default else text)
            continue
        choices = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is typing.Literal else None
        if f.name == "init":  # --init-image implies --init image
            g.add_argument("--init", choices=choices, default=None, help=f"{text} (default {default}; image when --init-image is given)")
            g.add_argument("--init-image", default=None, help="image to start from (implies --init image)")
            continue
        kind: Callable[[str], Any] = _PARSERS.get(f.name, hints[f.name] if hints[f.name] in (int, float) else str)
        g.add_argument(flags[f.name], type=str if choices else kind, choices=choices, default=default, help=f"{text} (default {shown})")


def _said_as_flags(text: str, flags: dict[str, str], named: Iterable[str] = ()) -> str:
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
    from nst_batch.tasks.planning.runtime import RuntimeOptions

    r = RuntimeOptions()
    g = p.add_argument_group("runtime")
    g.add_argument("--device", default=r.device, help=f"auto, cpu, cuda or cuda:N (default {r.device})")
    g.add_argument("--weights", default=r.weights, help=f"caffe (original VGG-19, offline), torchvision, or a state-dict file (default {r.weights})")
    g.add_argument("--weights-preprocessing", choices=("caffe", "torchvision"), default=r.weights_preprocessing,
                   help="input convention of a state-dict file (default caffe)")
    g.add_argument("--max-pixels", type=int, default=r.max_pixels, help=f"refuse input images with more pixels (default {r.max_pixels:,})")
    g.add_argument("--quality", type=int, default=r.quality, help=f"JPEG/WebP quality 1..100 (default {r.quality})")
    g.add_argument("--deterministic", action="store_true", help="deterministic cuDNN algorithms (slower on GPU)")
    g.add_argument("--threads", type=_threads, default=r.threads, metavar="N",
                   help="compute threads (default 0: the CPUs this process may use, by affinity and cgroup quota; "
                        "or $NST_THREADS, $OMP_NUM_THREADS)")
    g.add_argument("--save-every", type=int, default=0, metavar="N",
                   help="write the best image so far to --output every N iterations, so Ctrl-C or a crash keeps it (default 0: only at the end)")
    g.add_argument("--quiet", action="store_true", help="no progress output")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nst", description="Neural style transfer (Gatys et al.) for photo collections.")
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version (and the commit of a checkout) and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("stylize", help="stylize one content image", description="Repaint CONTENT in the style of STYLE(s).")
    p.add_argument("content", help="content image (photo)")
    p.add_argument("styles", nargs="+", metavar="style", help="style image(s) (paintings)")
    p.add_argument("-o", "--output", required=True, help="output image: .png, .jpg/.jpeg or .webp")
    p.add_argument("--metadata", default=None, help="write the run's metadata as JSON here")
    p.add_argument("--mask", default=None, metavar="FILE",
                   help="styles by region: an image of the photo's aspect ratio whose colours --mask-styles maps to styles or keep")
    p.add_argument("--mask-styles", type=_mask_styles, default=None, metavar="COLOUR=STYLE,...",
                   help="what each colour of --mask takes: a style's file name without extension (or its position 1, 2, ...) or keep "
                        "(the photo stays itself), e.g. '#ff0000=starry_night,#000000=keep'")
    _add_style_options(p)
    _add_runtime_options(p)

    v = sub.add_parser("validate", help="check a manifest and print the expanded plan",
                       description="Check MANIFEST without running it: its schema, style names, globs, every input's header, the "
                                   "output root's write access (and, with --dask-address, what the cluster's workers see); then "
                                   "print the pairs it expands to, with the parameters that differ from the defaults. Exit 0 when "
                                   "it would run, 2 with one line per problem.")
    v.add_argument("manifest", help="manifest path or s3:// URI")
    v.add_argument("--output", default=None, help="override the manifest's output root")
    v.add_argument("--json", action="store_true", help="print the plan as JSON")
    v.add_argument("--decode", action="store_true",
                   help="also decode every input image (one at a time, at the size its pairs use), so a corrupt or truncated photo "
                        "is caught before a run starts; without it only headers are read")
    v.add_argument("--dask-address", default=None, help="also check that this Dask cluster's workers see every input and the output")

    r = sub.add_parser("run", help="run the stylize-batch flow on a manifest, in this process",
                       description="Run the stylize-batch flow on MANIFEST in this process (with a temporary local Prefect "
                                   "server unless PREFECT_API_URL is set): style targets once per style, every pair not already "
                                   "done, outputs, sidecars, summary.json and index.html under the output root.")
    r.add_argument("manifest", help="manifest path or s3:// URI")
    r.add_argument("--output", default=None, help="override the manifest's output root (a folder or s3://bucket/prefix)")
    r.add_argument("--runner", choices=("threads", "dask"), default=None,
                   help="task runner (default threads, or $NST_TASK_RUNNER; dask when --dask-address is given)")
    r.add_argument("--dask-address", default=None, help="an existing Dask scheduler, e.g. tcp://host:8786")
    r.add_argument("--dask-workers", type=_dask_workers, default=None, help="worker processes of a local Dask cluster (1..256)")
    r.add_argument("--force", action="store_true", help="redo pairs and style targets even when current")
    r.add_argument("--verify", action="store_true",
                   help="before skipping a finished pair, hash its output against its sidecar (by default: its size and header)")
    r.add_argument("--summary-json", default=None, help="also write the run's summary JSON to this local path")
    r.add_argument("-v", "--verbose", action="store_true", help="show Prefect's own log lines (INFO), not only its warnings")

    gal = sub.add_parser("gallery", help="rebuild index.html at an output root from its sidecars",
                         description="Rebuild OUTPUT/index.html from the sidecars there (local folder or s3://bucket/prefix), "
                                     "without running anything: for a root that several runs wrote, or after a crash.")
    gal.add_argument("output", help="output root (a folder or s3://bucket/prefix)")

    runs = sub.add_parser("runs", help="list the runs recorded at an output root",
                          description="List every run recorded at OUTPUT (a folder or s3://bucket/prefix): when it started, how "
                                      "long it took, its counts, its Prefect flow run and manifest, and the first reason of its "
                                      "failures. Each run keeps its summary in OUTPUT/runs/; summary.json is the latest.")
    runs.add_argument("output", help="output root (a folder or s3://bucket/prefix)")

    # Listed for --help only: main() hands ``nst bench ...`` to the benchmark's own parser.
    sub.add_parser("bench", help="benchmark speed, quality and memory side by side with pastiche (nst bench --help)")
    return parser


class _Version(argparse.Action):
    """``--version``, worked out only when asked (it may run git)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
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
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5)
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
        return args.init or _DEFAULTS.init
    if args.init not in (None, "image"):
        raise BadInput(f"--init-image starts from that image, but --init {args.init} was given: drop one of them")
    return "image"


def _threads(text: str) -> int:
    from nst_batch.tasks.errors import InputError
    from nst_batch.tasks.pair.threads import parse_threads

    try:
        return parse_threads(text, "--threads")
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--threads ")) from None


def _dask_workers(text: str) -> int:
    from nst_batch.tasks.errors import InputError
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


def cmd_stylize(args: argparse.Namespace) -> int:
    from nst_batch.tasks.pair.stylize_files import RuntimeOptions, stylize_files
    from nst_batch.tasks.presenting.progress import make_progress

    cfg = config_from_args(args)
    runtime = RuntimeOptions(args.device, args.weights, args.weights_preprocessing, args.max_pixels, args.quality, args.deterministic,
                             args.threads)
    progress = None if args.quiet else make_progress(sys.stderr)
    try:
        record = stylize_files(args.content, args.styles, args.output, cfg, runtime, init_image_path=args.init_image,
                             metadata_path=args.metadata, on_step=progress, save_every=args.save_every, mask_path=args.mask,
                             mask_styles=args.mask_styles)
    finally:
        if progress is not None:
            progress.close()
    if not args.quiet:
        width, height = record.output_size
        print(f"wrote {args.output} ({width}x{height}) in {record.wall_time_s or 0.0:.1f}s, "
              f"{record.iterations} iterations, loss {record.final_losses.get('total', float('nan')):.4g}{_graphs(record.scales)}", file=sys.stderr)
    return 0


def _graphs(reports: list[dict[str, Any]]) -> str:
    """``, CUDA graphs: 2 of 2 scales replayed`` (and the capture's error), or nothing off CUDA."""
    scales = [r for r in reports if r.get("graphed") is not None]
    if not scales:
        return ""
    errors = [r["capture_error"] for r in scales if r.get("capture_error")]
    replayed = sum(bool(r["graphed"]) for r in scales)
    return f", CUDA graphs: {replayed} of {len(scales)} scales replayed" + (f" (capture failed: {errors[0]})" if errors else "")


def cmd_validate(args: argparse.Namespace) -> int:
    """Every problem in one pass: the text and schema, names and globs, then the files, the output
    root, the settings and the cluster of what is left; all printed at once, in file order."""
    from nst_batch.tasks.errors import ManifestError, TaskError
    from nst_batch.tasks.planning.manifest import ManifestProblem
    from nst_batch.tasks.planning.plan import plan_with_problems, shown_name
    from nst_batch.tasks.running.preflight import plan_problems

    plan, problems = plan_with_problems(args.manifest, args.output)
    cluster = ""
    if plan is not None:
        plan, found = plan_problems(plan, on_cluster=bool(args.dask_address))  # what the run would trip on
        problems += found
        _print_notes(plan)
        if args.decode:
            from nst_batch.tasks.running.preflight import decode_problems

            problems += decode_problems(plan, _DecodeLines(sys.stderr))
        try:
            cluster = _check_cluster(args.dask_address, plan)
        except TaskError as exc:
            problems.append(ManifestProblem("dask_address", str(exc)))
    if problems:
        unique = list(dict.fromkeys(problems))
        raise ManifestError(args.manifest, sorted(unique, key=lambda p: (p.line is None, p.line or 0)))
    assert plan is not None
    if args.json:
        print(json.dumps(plan.describe(), indent=2))
        return 0
    print(f"manifest {plan.source}: {plural(len(plan.pairs), 'pair')}{_swept(plan.pairs)}, {plural(len(plan.styles), 'style')}, "
          f"output {plan.settings.output_root}{cluster}")
    for name, uri in plan.styles.items():
        print(f"  style {name}: {uri}")
    shown: dict[int, str] = {}  # pairs with equal parameters share one config: each is described once
    for pair in plan.pairs:
        if id(pair.config) not in shown:
            shown[id(pair.config)] = _differences(pair.config)
        print(f"  {shown_name(plan.settings.output_uri(pair.name))}  <- {shown_name(pair.content_uri)} x {'+'.join(s.name for s in pair.styles)} "
              f"({shown[id(pair.config)]})")
    return 0


def _print_notes(plan: Any) -> None:
    """What the plan left out or changed without it being a problem (files skipped in a listed
    folder, a name another manifest's result holds): one line each, on stderr."""
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)


class _DecodeLines:
    """``decoded 40/120 images`` on stderr every 2 s (and at the end) while --decode works."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.last = stream, time.monotonic()

    def __call__(self, done: int, total: int, uri: str) -> None:
        now = time.monotonic()
        if done == total or now - self.last >= 2.0:
            self.last = now
            print(f"decoded {done}/{total} images" + (f" (now {uri})" if uri else ""), file=self.stream, flush=True)


def _differences(cfg: StyleConfig) -> str:
    """The parameters that differ from the defaults (size and iterations always): what a style's or a pair's overrides did."""
    from nst_batch.core.config import show

    always = ("size", "iterations")
    shown = [f.name for f in fields(cfg) if f.name in always or getattr(cfg, f.name) != getattr(_DEFAULTS, f.name)]
    return ", ".join(f"{name} {show(getattr(cfg, name))}" for name in [*always, *(n for n in shown if n not in always)])


def _swept(pairs: Any) -> str:
    """`` (6 of them sweep points of 1 pair)``, or nothing without a sweep."""
    points = [p for p in pairs if p.sweep]
    return f" ({len(points)} of them sweep points of {plural(len({(p.sweep_of, p.content_uri) for p in points}), 'pair')})" if points else ""


def _quiet_libraries() -> None:
    """Prefect's and Dask's INFO lines (a "Finished in state" per task, a Dask cluster's start-up)
    drown ours; -v shows them. Dask's logger is set here as well as through the environment (which
    its worker processes inherit): how it is set up when imported depends on what configured
    logging before it, and records that reach the root logger were printed in Prefect's format."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logging.getLogger("distributed").setLevel(logging.WARNING)


def cmd_run(args: argparse.Namespace) -> int:
    if not args.verbose:
        _quiet_libraries()
    from nst_batch.tasks.planning.plan import command_line_path, load_plan
    from nst_batch.tasks.running.preflight import check_outputs

    args.runner = args.runner or ("dask" if args.dask_address else None)  # an address says which runner
    args.output = command_line_path(args.output) if args.output else None  # against this shell's folder, also in the flow run's parameters
    plan = load_plan(args.manifest, args.output)  # fail fast, before Prefect starts, on a bad manifest
    plan = check_outputs(plan)  # and on an output root that takes no files, or special files where outputs go; names settled
    _print_notes(plan)
    if args.summary_json:
        from nst_batch.tasks.output.checks import check_writable_file

        check_writable_file(args.summary_json, "summary_json")
    from nst_batch.tasks.running.runners import existing_cluster

    cluster = _check_cluster(existing_cluster(args.runner, args.dask_address), plan)  # and on a cluster that is unreachable or cannot see the paths
    from nst_batch.tasks.running.preflight import CheckedPlan, handing_over
    from nst_batch.tasks.running.runners import make_task_runner

    runner = make_task_runner(args.runner, args.dask_address, args.dask_workers)  # a bad runner setting: one line, before Prefect
    # The flow run takes this plan instead of planning and checking again.
    checked = CheckedPlan(args.manifest, args.output, plan, getattr(runner, "address", None) if cluster else None)
    if not existing_cluster(args.runner, args.dask_address):
        from nst_batch.tasks.running.preflight import check_settings

        check_settings(plan)  # a device this machine lacks, an unreadable weights file: one line, before any pair
    print(f"{plural(len(plan.pairs), 'pair')} planned into {plan.settings.output_root}{cluster}; starting Prefect", file=sys.stderr, flush=True)
    server = _start_temporary_server()
    from nst_batch.flows.stylize_batch import stylize_batch
    from nst_batch.tasks.pair.models import get_weights
    from nst_batch.tasks.presenting.progress import listening, make_batch_progress

    get_weights(plan.settings.weights, plan.settings.weights_preprocessing)  # loaded once, shared by the pairs
    progress = make_batch_progress(sys.stderr)
    try:
        with _stop_soon_after_ctrl_c(), _api(server), listening(progress), handing_over(checked):
            state = stylize_batch.with_options(task_runner=runner)(manifest=args.manifest, output=args.output, force=args.force, verify=args.verify,
                                                                   return_state=True)
    finally:
        progress.close()
        if server is not None:
            _drain_prefect()  # its log and event workers send to the server: stopped first, they retry for a minute
            server.stop()
    summary = _own_summary(state)
    if summary is None:
        print(f"nst: failed: the flow ended {state.type.value} without a summary: {state.message}", file=sys.stderr)
        return EXIT_FAILED
    if args.summary_json:
        from nst_batch.tasks.output.atomic import write_atomic

        write_atomic(args.summary_json, json_bytes(summary.to_json()))
    _print_summary(summary)
    return 0 if state.is_completed() and not summary.failed else EXIT_FAILED


def _check_cluster(address: str | None, plan: Any) -> str:
    """What the cluster's workers see, checked before any work: a phrase for the plan's line."""
    if not address:
        return ""
    from nst_batch.tasks.running.cluster import check_cluster

    workers = check_cluster(plan, address)
    return f" on the Dask cluster at {address} ({plural(workers, 'worker')} now)"


def _drain_prefect() -> None:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=5)


def _own_summary(state: Any) -> RunSummary | None:
    """This run's summary, from its own flow's final state (never ``OUTPUT/summary.json``, which a
    concurrent run on the same root may have written)."""
    try:
        return RunSummary.from_json(state.result(raise_on_failure=False))
    except Exception:  # no result, or not a summary (the flow failed before it)
        return None


INTERRUPT_GRACE_S = 5.0


@contextlib.contextmanager
def _stop_soon_after_ctrl_c() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt as usual, and the process ends at most INTERRUPT_GRACE_S
    later whatever happens to it: in the full test suite a SIGINT was seen not to stop a batch
    (Prefect waits on its own threads and futures; where it swallows the interrupt was not found),
    and the interpreter's exit also waits for the task runner's threads to finish their pairs.
    Ending hard is safe: every write is atomic, and a re-run skips finished pairs and removes the
    temporary files of dead writers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum: int, frame: Any) -> None:
        threading.Thread(target=_exit_after_grace, name="nst-interrupt", daemon=True).start()
        signal.default_int_handler(signum, frame)

    # SIGTERM (a scheduler stopping the job, `kill`) ends a run the same way as Ctrl-C: Prefect
    # records the run's end and the temporary server is stopped, where the default would kill us
    # on the spot and leave the flow run "Running".
    previous = {sig: signal.signal(sig, on_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    # Inside a flow run Prefect installs its own SIGTERM handler (prefect.utilities.engine's
    # capture_sigterm), which raises in the flow and calls ours only after the task runner has
    # waited for the pair in progress: 12 s were measured. Its handler is looked up by module
    # attribute when installed, so the grace timer is started from it too (Prefect is pinned
    # below 3.10; tests/flows/test_interruptions.py measures SIGTERM on every runner).
    from prefect.utilities import engine

    prefect_handler = engine._prefect_sigterm_handler

    def with_grace(signum: int, *args: Any) -> Any:
        threading.Thread(target=_exit_after_grace, name="nst-interrupt", daemon=True).start()
        return prefect_handler(signum, *args)

    engine._prefect_sigterm_handler = with_grace  # type: ignore[assignment]
    try:
        yield
    finally:
        engine._prefect_sigterm_handler = prefect_handler
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit_after_grace() -> None:
    if _EXITING.is_set():  # a second signal: the first one's timer is already running
        return
    _EXITING.set()
    time.sleep(INTERRUPT_GRACE_S)
    print(f"nst: interrupted; stopping now ({INTERRUPT_GRACE_S:.0f} s after the interrupt)", file=sys.stderr, flush=True)
    if _SERVER is not None:
        _SERVER.stop()  # os._exit skips atexit
    os._exit(130)


_SERVER: Any = None  # this process's temporary Prefect server, if it started one
_EXITING = threading.Event()


def _start_temporary_server() -> Any:
    """Without a Prefect server to talk to (no PREFECT_API_URL in the environment or the profile),
    start the temporary one now, so that it starts while we import and load (see nst_batch.cli.server)."""
    global _SERVER
    import atexit

    from nst_batch.cli.server import TemporaryServer

    if os.environ.get("PREFECT_API_URL"):
        return None
    # Started before Prefect's settings are imported (1 s); stopped again if the profile names a server.
    server = TemporaryServer().start()
    atexit.register(server.stop)
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        server.stop()
        return None
    _SERVER = server
    return server


@contextlib.contextmanager
def _api(server: Any) -> Iterator[None]:
    """Point Prefect at our temporary server, once it answers."""
    from nst_batch.flows.stylize_batch import FLOW_NAME
    from nst_batch.tasks.running.prefect_runs import mark_dead_runs_crashed

    if server is None:
        _report_crashed(mark_dead_runs_crashed(FLOW_NAME))
        yield
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server.wait()
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        _report_crashed(mark_dead_runs_crashed(FLOW_NAME))
        yield


def _report_crashed(names: list[str]) -> None:
    if names:
        print(f"marked {plural(len(names), 'flow run')} of killed nst runs as Crashed: {', '.join(names)}", file=sys.stderr)


def _print_summary(summary: RunSummary) -> None:
    from nst_batch.tasks.running.summary import targets_in_words

    c = summary.counts
    wall = time.monotonic() - _STARTED
    print(f"{c['planned']} pairs planned: {c['produced']} produced, {c['skipped']} skipped, {c['failed']} failed "
          f"in {wall:.1f}s ({summary.wall_time_s:.1f}s in the flow); style targets: {targets_in_words(summary.style_targets)}")
    if c["skipped"]:
        print(f"  {plural(c['skipped'], 'pair')} done by earlier runs (skipped): their images are in the gallery")
    for reason, names in _by_reason(summary.failures).items():
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        print(f"  FAILED {names[0]}: {reason}" if len(names) == 1 else f"  FAILED {len(names)} pairs ({shown}): {reason}")
    for warning in summary.warnings:
        print(f"  warning: {warning}")
    print(f"output: {summary.output}  gallery: {summary.gallery or 'not built'}")


def _by_reason(failures: list[Failure]) -> dict[str, list[str]]:
    """Failed pairs grouped by their reason: a cluster lost mid-run is one line, not 10,000."""
    groups: dict[str, list[str]] = {}
    for failure in failures:
        groups.setdefault(failure.reason, []).append(failure.name)
    return groups


def cmd_gallery(args: argparse.Namespace) -> int:
    from nst_batch.tasks.presenting.gallery import build_gallery

    print(build_gallery(args.output))
    return 0


def _quiet_prefect_defaults() -> None:
    """No telemetry from the temporary server (it cannot reach the internet, logs an error each
    time, and its writes contend for the SQLite file); users can still set these themselves."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")  # the client's telemetry notice, too
    # Expandable segments let the CUDA allocator grow blocks in place instead of caching many
    # sizes: less memory reserved beyond what is used (read when CUDA starts; users may override).
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")


def cmd_runs(args: argparse.Namespace) -> int:
    from nst_batch.tasks.presenting.history import list_runs, runs_table

    for line in runs_table(list_runs(args.output)):
        print(line)
    return 0


COMMANDS = {"stylize": cmd_stylize, "validate": cmd_validate, "run": cmd_run, "gallery": cmd_gallery, "runs": cmd_runs}


_STARTED = time.monotonic()  # reset by main(): wall times reported include start-up


def _bench(argv: list[str]) -> int:
    """The benchmarks are a checkout's tool, not part of the installed package: ``nst bench`` finds
    them next to an editable install (or on the path, as ``python -m benchmarks.run`` has them)."""
    import importlib.util
    from pathlib import Path

    checkout = Path(__file__).resolve().parents[2]
    if importlib.util.find_spec("benchmarks") is None and (checkout / "benchmarks" / "run.py").is_file():
        sys.path.insert(0, str(checkout))
    if importlib.util.find_spec("benchmarks") is None:
        print("nst: error: nst bench runs the benchmarks of a checkout of nst-batch (benchmarks/ is not installed); "
              "install it with pip install -e . from the checkout", file=sys.stderr)
        return 2
    bench_main = importlib.import_module("benchmarks.run").main

    return bench_main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    global _STARTED
    _STARTED = time.monotonic()
    _quiet_prefect_defaults()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the benchmark parses its own options (argparse's REMAINDER drops leading --flags)
        return _bench(argv[1:])
    parser = build_parser()
    command: str | None = None
    try:
        args = parser.parse_args(argv)
        command = args.command
        return COMMANDS[command](args)
    except BadInput as exc:
        return _report("error", exc, EXIT_BAD_INPUT)
    except CliError as exc:
        return _report("failed", exc, EXIT_FAILED)
    except ManifestError as exc:  # every problem, one per line
        print(f"nst: error: {exc.source}: {plural(len(exc.problems), 'problem')} in the manifest:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (CoreError, TaskError) as exc:
        bad_input = isinstance(exc, ConfigError | WeightsError | InputError)
        code = EXIT_BAD_INPUT if bad_input else EXIT_FAILED
        return _report("error" if bad_input else "failed", exc, code, _flags(parser, command))
    except KeyboardInterrupt:
        # Prefect's own SIGTERM handler (inside a flow run) replaces ours, so the grace timer may
        # not be running yet; without it the interpreter's exit waits for the pair in progress.
        threading.Thread(target=_exit_after_grace, name="nst-interrupt", daemon=True).start()
        print("nst: interrupted", file=sys.stderr)
        return 130


def _report(word: str, exc: BaseException, code: int, flags: dict[str, str] | None = None) -> int:
    print(f"nst: {word}: {_in_cli_words(exc, flags or {})}", file=sys.stderr)
    return code


def _flags(parser: argparse.ArgumentParser, command: str | None) -> dict[str, str]:
    """A command's settings and their flags: ``max_pixels`` -> ``--max-pixels``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            sub = action.choices[command]
            return {a.dest: next(o for o in a.option_strings if o.startswith("--")) for a in sub._actions
                    if any(o.startswith("--") for o in a.option_strings) and a.dest != "help"}
    return {}


def _in_cli_words(exc: BaseException, flags: dict[str, str]) -> str:
    """The message on one line, with the settings it names said as this command's flags."""
    return _said_as_flags(_one_line(exc), flags, getattr(exc, "settings", ()))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())

