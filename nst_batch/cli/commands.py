"""The ``nst`` commands, each a short function over the tasks ring: stylize, validate, run, gallery,
runs (and bench, the checkout's benchmarks).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from nst_batch.cli.parser import config_from_args
from nst_batch.cli.reporting import (
    EXIT_FAILED,
    DecodeLines,
    differences,
    graphs_line,
    print_notes,
    print_summary,
    swept,
)
from nst_batch.cli.session import (
    drain_prefect,
    prefect_api,
    quiet_libraries,
    start_temporary_server,
    stop_soon_after_ctrl_c,
)
from nst_batch.tasks.basics import json_bytes, plural
from nst_batch.tasks.errors import ManifestError, TaskError
from nst_batch.tasks.pair.records import RunSummary

if TYPE_CHECKING:  # Prefect and the planner are imported by the commands that use them: nst --help stays quick
    from prefect.states import State

    from nst_batch.tasks.planning.jobs import Plan


def cmd_stylize(args: argparse.Namespace) -> int:
    from nst_batch.tasks.pair.stylize_files import RuntimeOptions, stylize_files
    from nst_batch.tasks.presenting.progress import make_progress

    cfg = config_from_args(args)
    runtime = RuntimeOptions.from_values(args)
    progress = None if args.quiet else make_progress(sys.stderr)
    try:
        record = stylize_files(
            args.content,
            args.styles,
            args.output,
            cfg,
            runtime,
            init_image_path=args.init_image,
            metadata_path=args.metadata,
            on_step=progress,
            save_every=args.save_every,
            mask_path=args.mask,
            mask_styles=args.mask_styles,
        )
    finally:
        if progress is not None:
            progress.close()
    if not args.quiet:
        width, height = record.output_size
        print(
            f"wrote {args.output} ({width}x{height}) in {record.wall_time_s or 0.0:.1f}s, "
            f"{record.iterations} iterations, loss "
            f"{record.final_losses.get('total', float('nan')):.4g}{graphs_line(record.scales)}",
            file=sys.stderr,
        )
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Every problem in one pass: the text and schema, names and globs, then the files, the output
    root, the settings and the cluster of what is left; all printed at once, in file order."""
    from nst_batch.tasks.planning.manifest import ManifestProblem
    from nst_batch.tasks.planning.plan import shown_name
    from nst_batch.tasks.running.preflight import decode_problems, prepare_run

    # What the run would trip on, all of it: the inputs too, and the device unless a cluster runs it.
    checked = prepare_run(
        args.manifest, args.output, every_problem=True, inputs=True, settings=True, on_cluster=bool(args.dask_address)
    )
    plan, problems = checked.plan, list(checked.problems)
    print_notes(plan)
    if args.decode:
        problems += decode_problems(plan, DecodeLines(sys.stderr))
    cluster = ""
    try:
        cluster = _check_cluster(args.dask_address, plan)
    except TaskError as exc:
        problems.append(ManifestProblem("dask_address", str(exc)))
    if problems:
        unique = list(dict.fromkeys(problems))
        raise ManifestError(args.manifest, sorted(unique, key=lambda p: (p.line is None, p.line or 0)))
    if args.json:
        print(json.dumps(plan.describe(), indent=2))
        return 0
    print(
        f"manifest {plan.source}: {plural(len(plan.pairs), 'pair')}{swept(plan.pairs)}, "
        f"{plural(len(plan.styles), 'style')}, "
        f"output {plan.settings.output_root}{cluster}"
    )
    for name, uri in plan.styles.items():
        print(f"  style {name}: {uri}")
    shown: dict[int, str] = {}  # pairs with equal parameters share one config: each is described once
    for pair in plan.pairs:
        if id(pair.config) not in shown:
            shown[id(pair.config)] = differences(pair.config)
        print(
            f"  {shown_name(plan.settings.output_uri(pair.name))}  <- {shown_name(pair.content_uri)} x "
            f"{'+'.join(s.name for s in pair.styles)} "
            f"({shown[id(pair.config)]})"
        )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if not args.verbose:
        quiet_libraries()
    from nst_batch.tasks.planning.plan import command_line_path
    from nst_batch.tasks.running.preflight import prepare_run
    from nst_batch.tasks.running.runners import existing_cluster

    args.runner = args.runner or ("dask" if args.dask_address else None)  # an address says which runner
    args.output = (
        command_line_path(args.output) if args.output else None
    )  # against this shell's folder, also in the flow run's parameters
    # Fail fast, before Prefect starts: a bad manifest, an output root that takes no files or has
    # special files where outputs go, a device this machine lacks or an unreadable weights file
    # (not on a cluster started elsewhere: its workers run the pairs). Names settled.
    on_cluster = existing_cluster(args.runner, args.dask_address) is not None
    checked = prepare_run(args.manifest, args.output, settings=not on_cluster)
    plan = checked.plan
    print_notes(plan)
    if args.summary_json:
        from nst_batch.tasks.output.checks import check_writable_file

        check_writable_file(args.summary_json, "summary_json")
    cluster = _check_cluster(
        existing_cluster(args.runner, args.dask_address), plan
    )  # and on a cluster that is unreachable or cannot see the paths
    from nst_batch.tasks.running.runners import make_task_runner

    runner = make_task_runner(
        args.runner, args.dask_address, args.dask_workers
    )  # a bad runner setting: one line, before Prefect
    # The flow run takes this plan instead of planning and checking again.
    checked = replace(checked, cluster=getattr(runner, "address", None) if cluster else None)
    print(
        f"{plural(len(plan.pairs), 'pair')} planned into {plan.settings.output_root}{cluster}; starting Prefect",
        file=sys.stderr,
        flush=True,
    )
    server = start_temporary_server()
    from nst_batch.flows.stylize_batch import stylize_checked
    from nst_batch.tasks.pair.networks import get_weights
    from nst_batch.tasks.presenting.progress import listening, make_batch_progress

    get_weights(
        plan.settings.runtime.weights, plan.settings.runtime.weights_preprocessing
    )  # loaded once, shared by the pairs
    progress = make_batch_progress(sys.stderr)
    try:
        with stop_soon_after_ctrl_c(), prefect_api(server), listening(progress):
            state = stylize_checked(checked).with_options(task_runner=runner)(
                manifest=args.manifest, output=args.output, force=args.force, verify=args.verify, return_state=True
            )
    finally:
        progress.close()
        if server is not None:
            drain_prefect()  # its log and event workers send to the server: stopped first, they retry for a minute
            server.stop()
    summary = _own_summary(state)
    if summary is None:
        print(f"nst: failed: the flow ended {state.type.value} without a summary: {state.message}", file=sys.stderr)
        return EXIT_FAILED
    if args.summary_json:
        from nst_batch.tasks.output.atomic import write_atomic

        write_atomic(args.summary_json, json_bytes(summary.to_json()))
    print_summary(summary)
    return 0 if state.is_completed() and not summary.failed else EXIT_FAILED


def _check_cluster(address: str | None, plan: Plan) -> str:
    """What the cluster's workers see, checked before any work: a phrase for the plan's line."""
    if not address:
        return ""
    from nst_batch.tasks.running.cluster import check_cluster

    workers = check_cluster(plan, address)
    return f" on the Dask cluster at {address} ({plural(workers, 'worker')} now)"


def _own_summary(state: State) -> RunSummary | None:
    """This run's summary, from its own flow's final state (never ``OUTPUT/summary.json``, which a
    concurrent run on the same root may have written)."""
    try:
        return RunSummary.from_json(state.result(raise_on_failure=False))
    except Exception:  # no result, or not a summary (the flow failed before it)
        return None


def cmd_gallery(args: argparse.Namespace) -> int:
    from nst_batch.tasks.presenting.gallery import build_gallery

    print(build_gallery(args.output))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from nst_batch.tasks.presenting.history import list_runs, runs_table

    for line in runs_table(list_runs(args.output)):
        print(line)
    return 0


COMMANDS = {"stylize": cmd_stylize, "validate": cmd_validate, "run": cmd_run, "gallery": cmd_gallery, "runs": cmd_runs}


def cmd_bench(argv: list[str]) -> int:
    """The benchmarks are a checkout's tool, not part of the installed package: ``nst bench`` finds
    them next to an editable install (or on the path, as ``python -m benchmarks.run`` has them)."""
    import importlib.util

    checkout = Path(__file__).resolve().parents[2]
    if importlib.util.find_spec("benchmarks") is None and (checkout / "benchmarks" / "run.py").is_file():
        sys.path.insert(0, str(checkout))
    if importlib.util.find_spec("benchmarks") is None:
        print(
            "nst: error: nst bench runs the benchmarks of a checkout of nst-batch (benchmarks/ is not installed); "
            "install it with pip install -e . from the checkout",
            file=sys.stderr,
        )
        return 2
    bench_main = importlib.import_module("benchmarks.run").main

    return bench_main(argv)
