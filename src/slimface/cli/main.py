"""``slimface`` command line: one subcommand per task.

Each ``slimface.cli.<topic>`` module exposes ``register(subparsers)`` that adds its
subcommands and sets ``func`` on them. Results go to stdout, progress and logs to stderr;
``--json`` writes the result as JSON to stdout or a file, so nothing needs to scrape human
text (``slimface.cli._common``). Exit codes: 0 success, 1 failure, 2 usage.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from typing import Any, Iterator, Sequence

from slimface.cli import (align, bench, compress, data, embed, export, gallery, import_model,
                          info, models, report, train, verify)
from slimface.cli import eval as eval_
from slimface.cli._common import group_usage, json_dest_problem, print_warning, tidy_usage
from slimface.errors import SlimfaceError

# Topic modules, in the order their subcommands appear in --help.
_TOPICS = (data, align, embed, eval_, models, import_model, train, compress, info, bench,
           verify, gallery, export, report)

log = logging.getLogger("slimface")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slimface", description="Small, fast face recognition: align, train, compress, "
                                     "evaluate on LFW, verify and identify.",
        epilog="Results go to stdout (--json: JSON only), messages to stderr. Exit status: 0 "
               "success (verify: same or different alike; identify: a match or unknown), 1 an "
               "input or setting that cannot be used (the message names it), 2 a usage "
               "error.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, libraries' informational messages included")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for topic in _TOPICS:
        topic.register(sub)
    tidy_usage(parser)
    return parser


@contextlib.contextmanager
def _plain_warnings() -> Iterator[None]:
    """slimface's own warnings (a damaged image, a doubtful enrolment, an int8 file wrong
    for this CPU) print as one ``slimface: warning:`` line, not as Python's source-line
    report; other libraries' warnings keep Python's form."""
    shown = warnings.showwarning

    def show(message: Any, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if category.__module__.startswith("slimface"):
            print_warning(str(message))
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # slimface's own progress at INFO; libraries (FAISS's loader...) only warn, unless -v
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not getattr(args, "func", None):
        return group_usage(parser)
    json_dest = getattr(args, "json", None)
    if isinstance(json_dest, str) and json_dest != "-":
        problem = json_dest_problem(json_dest)
        if problem:
            parser.error(f"--json {json_dest}: {problem}")  # before the work
    try:
        with _plain_warnings():
            return int(args.func(args) or 0)
    except SlimfaceError as exc:
        print(f"slimface: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("slimface: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `slimface gallery list | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
