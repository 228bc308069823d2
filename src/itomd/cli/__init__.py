"""The ``itomd`` command line: one module per command (``simulate``, ``export``, ``reference``, ``train``,
``distill``, ``sample``, ``analyze``/``report``, ``fit-interpolation``, ``demo``), each with ``add_parser`` and ``run``.

Strings become objects here and nowhere below: options are parsed and validated, systems and priors
are resolved from their specification, and library functions receive objects. Errors caused by the
user's input are printed as one line (``itomd COMMAND: error: ...``) with exit status 2; no
tracebacks unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from typing import NoReturn, Sequence

from itomd import __version__
from itomd._allocator import keep_freed_memory
from itomd.cli import (analyze, check, demo, distill, export, fit_interpolation, reference, sample, simulate, speed,
                       train)
from itomd._files import describe_write_failure
from itomd.cli._common import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, Parser, Terminated, raise_terminated
from itomd.errors import ItomdError

#: The commands in the order ``itomd --help`` lists them.
COMMANDS = (simulate, export, reference, train, distill, sample, speed, check, analyze, fit_interpolation, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="itomd", description="Learned transition densities for molecular dynamics (ITO/BoPITO).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--version", action="version", version=f"itomd {__version__}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _join_negative_values(argv: list[str]) -> list[str]:
    """Let ``--box -1.5,1.2`` and ``--x0 -0.5`` work (argparse reads a leading '-' as an option)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in ("--box", "--x0") and i + 1 < len(argv) and argv[i + 1].startswith("-") and argv[i + 1][1:2] not in ("-", ""):
            out.append(f"{token}={argv[i + 1]}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``itomd`` command.

    Every failure ends in one line on stderr: a user's error (status 2), a full disk or a forbidden
    output location (status 2, saying what work is kept and how to continue), Ctrl-C (130) or SIGTERM
    (143, both saying what is kept), anything unexpected (1). ``--debug`` shows tracebacks instead.
    """
    argv = _join_negative_values(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = argv  # for messages that repeat the command (resume hints)
    if not args.debug:  # warnings as one line each, like errors
        warnings.formatwarning = lambda message, category, *_, **__: f"itomd {args.command}: warning: {message}\n"
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live only there
    previous_sigterm = signal.signal(signal.SIGTERM, raise_terminated) if in_main_thread else None  # like Ctrl-C
    try:
        return int(args.func(args) or 0)
    except ItomdError as exc:
        if args.debug:
            raise
        print(f"itomd {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        how = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"itomd {args.command}: {how}{_work_kept(args)}", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    except Exception as exc:  # an unexpected failure: still one line, the traceback on request
        if args.debug:
            raise
        problem = describe_write_failure(exc, getattr(args, "out", None))
        if problem is not None:  # a full disk, a read-only or forbidden output location
            print(f"itomd {args.command}: error: {problem}{_work_kept(args)}", file=sys.stderr)
            return EXIT_USAGE
        message = str(exc).splitlines()[0] if str(exc) else ""
        print(f"itomd {args.command}: internal error: {type(exc).__name__}: {message} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_sigterm)


def _work_kept(args: argparse.Namespace) -> str:
    """The end of the message of an interrupted or failed command: what it keeps and how to continue,
    from the command's module (``work_kept(args)``), or a general note: outputs are written whole."""
    work_kept = getattr(sys.modules[args.func.__module__], "work_kept", None)
    try:
        note = work_kept(args) if work_kept is not None else ""
    except Exception:  # noqa: BLE001 - the note must never hide the message it belongs to
        note = ""
    return f"; {note or 'no partial output was left (files are written whole); re-run the same command'}"


def run_command() -> NoReturn:
    """The ``itomd`` executable: :func:`main`, then exit with its status.

    A Ctrl-C or SIGTERM that arrives after the command has finished (while the interpreter shuts
    down) is ignored, so it can neither print a traceback from an exit handler nor turn a completed
    run into a killed one.
    """
    keep_freed_memory()  # the networks' pair tensors are not mapped afresh every step (2-2.6x on molecules)
    try:
        status = main()
    except KeyboardInterrupt:  # a signal between main()'s handlers and here: main() said nothing yet
        print("itomd: interrupted", file=sys.stderr)
        status = EXIT_INTERRUPTED
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(status)


if __name__ == "__main__":  # pragma: no cover
    run_command()
