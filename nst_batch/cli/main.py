"""The ``nst`` command line: parse, dispatch to a command (nst_batch.cli.commands), and turn errors
into one line and an exit code.

Exit codes: 0 success, 1 the run failed, 2 bad input (a one-line message on stderr, nothing written).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence

from nst_batch.cli.commands import COMMANDS, cmd_bench
from nst_batch.cli.errors import BadInput, CliError
from nst_batch.cli.parser import build_parser
from nst_batch.cli.reporting import EXIT_BAD_INPUT, EXIT_FAILED, flags_of, mark_start, report
from nst_batch.cli.session import exit_after_grace, quiet_prefect_defaults
from nst_batch.core.errors import ConfigError, CoreError, WeightsError
from nst_batch.tasks.basics import plural
from nst_batch.tasks.errors import InputError, ManifestError, TaskError


def main(argv: Sequence[str] | None = None) -> int:
    mark_start()
    quiet_prefect_defaults()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the benchmark parses its own options (argparse's REMAINDER drops leading --flags)
        return cmd_bench(argv[1:])
    parser = build_parser()
    command: str | None = None
    try:
        args = parser.parse_args(argv)
        command = args.command
        return COMMANDS[command](args)
    except BadInput as exc:
        return report("error", exc, EXIT_BAD_INPUT)
    except CliError as exc:
        return report("failed", exc, EXIT_FAILED)
    except ManifestError as exc:  # every problem, one per line
        print(f"nst: error: {exc.source}: {plural(len(exc.problems), 'problem')} in the manifest:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (CoreError, TaskError) as exc:
        bad_input = isinstance(exc, ConfigError | WeightsError | InputError)
        code = EXIT_BAD_INPUT if bad_input else EXIT_FAILED
        return report("error" if bad_input else "failed", exc, code, flags_of(parser, command))
    except KeyboardInterrupt:
        # Prefect's own SIGTERM handler (inside a flow run) replaces ours, so the grace timer may
        # not be running yet; without it the interpreter's exit waits for the pair in progress.
        threading.Thread(target=exit_after_grace, name="nst-interrupt", daemon=True).start()
        print("nst: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
