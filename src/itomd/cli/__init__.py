"""The ``itomd`` command line: one module per command (``simulate``, ``export``, ``reference``, ``train``,
``sample``, ``analyze``/``report``, ``fit-interpolation``, ``demo``), each with ``add_parser`` and ``run``.

Strings become objects here and nowhere below: options are parsed and validated, systems and priors
are resolved from their specification, and library functions receive objects. Errors caused by the
user's input are printed as one line (``itomd COMMAND: error: ...``) with exit status 2; no
tracebacks unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Sequence

from itomd import __version__
from itomd.cli import analyze, demo, export, fit_interpolation, reference, sample, simulate, train
from itomd.cli._common import EXIT_USAGE, Parser
from itomd.errors import ItomdError

#: The commands in the order ``itomd --help`` lists them.
COMMANDS = (simulate, export, reference, train, sample, analyze, fit_interpolation, demo)


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
    """Entry point of the ``itomd`` command."""
    argv = _join_negative_values(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:  # warnings as one line each, like errors
        warnings.formatwarning = lambda message, category, *_, **__: f"itomd {args.command}: warning: {message}\n"
    try:
        return int(args.func(args) or 0)
    except ItomdError as exc:
        if args.debug:
            raise
        print(f"itomd {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"itomd {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure: still one line, the traceback on request
        if args.debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else ""
        print(f"itomd {args.command}: internal error: {type(exc).__name__}: {message} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
