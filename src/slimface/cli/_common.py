"""What every CLI command shares: the option vocabulary and where output goes.

Vocabulary (``tests/test_cli_vocabulary.py`` checks it on the whole parser):

* ``--model`` names every model a command reads (registry name or model file), never a
  positional argument; commands that take several models take ``--model A B`` (or
  ``--model A --model B``), the first one being the baseline where there is one.
* ``--batch`` for batch sizes, ``--repeats`` for timed repetitions, ``--meta KEY=VALUE``
  (repeatable) for metadata. An option taking several values takes them the same way as
  ``--model``: after one flag or over repeated flags.
* Earlier spellings stay accepted as hidden aliases (:func:`hidden_alias`).

Output: a command's result goes to stdout; progress, logs and warnings to stderr.
``--json`` (no file) makes stdout carry the JSON object only, and the human result moves
to stderr; ``--json FILE`` writes the JSON to FILE and leaves the human result on stdout.
:func:`print_result` / :func:`emit_result` apply that rule.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence, TextIO

from slimface.io.atomic import atomic_write_text


# --------------------------------------------------------------------------- options
def add_json_arg(parser: Any) -> None:
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="OUT",
                        help="write the result as one JSON object to OUT (stdout when OUT is "
                             "omitted; the human result then goes to stderr)")


#: Names --json refuses to write to: images (``--json`` before the images takes the first
#: one as its OUT, which would replace the photo with JSON).
_NOT_JSON_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pnm", ".bmp", ".webp",
                      ".gif", ".tif", ".tiff", ".heic", ".heif", ".avif", ".slim", ".onnx",
                      ".tflite", ".pt", ".db")


def json_dest_problem(dest: str) -> str | None:
    """Why ``--json dest`` must not be written (checked before the work), or None."""
    path = Path(dest)
    if path.is_dir():
        return "is a folder; pass a file name"
    misplaced = ("; --json takes an optional file name, so before the inputs it takes the "
                 "first of them: put --json after them, or write --json=OUT.json")
    if path.suffix.lower() in _NOT_JSON_SUFFIXES:
        return f"is not a JSON file name, refusing to overwrite it{misplaced}"
    if path.is_file():
        try:
            with path.open("rb") as f:
                head = f.read(64).lstrip()
        except OSError:
            return None  # the write will say what is wrong
        if head and head[:1] not in (b"{", b"["):
            return f"exists and is not JSON, refusing to overwrite it{misplaced}"
    return None


class Several(argparse.Action):
    """``nargs="+"`` that also collects repeated flags (``--model A B`` = ``--model A
    --model B``); values given on the command line replace the default instead of
    extending it."""

    def __init__(self, option_strings: Sequence[str], dest: str, nargs: Any = "+",
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=nargs, **kwargs)
        self.initial = self.default

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        current = getattr(namespace, self.dest, None)
        items = [] if current is None or current is self.initial else list(current)
        setattr(namespace, self.dest, items + list(values))


def add_bad_file_arg(parser: Any, what: str) -> None:
    """``--bad-file {error,skip}``: whether one image that cannot be used (``what``) stops a
    batch (the default, nothing is written or answered) or is named on stderr with its
    problem, listed in the JSON, and the other images go on."""
    from slimface.conventions import BAD_FILE_POLICIES

    parser.add_argument("--bad-file", choices=BAD_FILE_POLICIES, default="error",
                        help=f"{what}: stop with its error (default), or skip it (named on "
                             f"stderr with its problem, listed in the JSON) and go on")


def print_warning(text: str) -> None:
    """One ``slimface: warning:`` line on stderr: every warning the commands print."""
    print(f"slimface: warning: {text}", file=sys.stderr)


def report_skipped(skipped: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """Name each skipped image and its problem on stderr; the JSON list of them."""
    for path, problem in skipped:
        print_warning(f"{path}: {problem}; skipped")
    return [{"path": path, "problem": problem} for path, problem in skipped]


def hidden_alias(parser: Any, action: argparse.Action, *flags: str) -> argparse.Action:
    """Earlier spellings ``flags`` of ``action``'s option: parsed into the same value, shown
    nowhere (not in ``--help``, not in usage lines)."""
    kwargs: dict[str, Any] = {"dest": action.dest, "default": argparse.SUPPRESS,
                              "help": argparse.SUPPRESS}
    if action.nargs != 0:  # options that take values (not store_true and the like)
        kwargs.update(nargs=action.nargs, type=action.type, choices=action.choices,
                      metavar=action.metavar)
    alias = parser.add_argument(*flags, action=type(action), **kwargs)
    if isinstance(action, Several):
        alias.initial = action.initial
    return alias


def add_model_arg(parser: Any, *, help: str, default: str | None = None,
                  required: bool = False, positional_alias: bool = False) -> argparse.Action:
    """``--model M``: the one model a command reads. ``positional_alias`` also accepts the
    model as a positional argument, the command's earlier spelling (hidden)."""
    if not positional_alias:
        return parser.add_argument("--model", default=default, required=required,
                                   metavar="MODEL", help=help)
    group = parser.add_mutually_exclusive_group(required=required)
    action = group.add_argument("--model", default=default, metavar="MODEL", help=help)
    group.add_argument("model", nargs="?", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    group.model_alias = True  # type: ignore[attr-defined]  # see tidy_usage
    return action


def tidy_usage(parser: argparse.ArgumentParser) -> None:
    """Show a required ``--model`` that has a hidden positional alias as required in the
    usage line (argparse brackets it: the two sit apart in the line, optionals first).
    Applied to ``parser`` and every sub-command below it, once all options are added."""
    for group in parser._mutually_exclusive_groups:
        if getattr(group, "model_alias", False) and group.required:
            usage = parser.format_usage().removeprefix("usage: ").rstrip("\n")
            parser.usage = usage.replace("[--model MODEL]", "--model MODEL").replace("%", "%%")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                tidy_usage(sub)


def add_models_arg(parser: Any, *, help: str, default: Sequence[str], dest: str = "models",
                   choices: Sequence[str] | None = None) -> argparse.Action:
    """``--model A B`` (or ``--model A --model B``): several models, in order."""
    return parser.add_argument("--model", dest=dest, action=Several, default=list(default),
                               choices=choices, metavar="MODEL", help=help)


def parse_meta(items: Sequence[str], option: str = "--meta") -> dict[str, str]:
    """``--meta KEY=VALUE`` items (repeatable) as a dict; values stay text. An item that is a
    JSON object (``'{"key": "value"}'``, an earlier form) is merged as well."""
    from slimface.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        if item.lstrip().startswith("{"):
            try:
                obj = json.loads(item)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{option} {item!r}: not valid JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise ConfigError(f"{option} {item!r}: expected KEY=VALUE")
            out.update(obj)
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def int_at_least(minimum: int) -> Any:
    """argparse ``type=`` for an integer >= ``minimum`` (a usage error, exit 2, otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)
nonneg_int = int_at_least(0)


def float_between(low: float, high: float) -> Any:
    """argparse ``type=`` for a finite number in ``[low, high]``: a padding of 50 (meant as
    pixels) or a threshold of NaN is a usage error, not hours of work or a silent verdict."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not low <= value <= high:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}, "
                                             f"got {text}")
        return value

    return parse


fraction = float_between(0.0, 1.0)
cosine = float_between(-1.0, 1.0)


def group_usage(parser: argparse.ArgumentParser) -> int:
    """A command group called without its sub-command (``slimface``, ``slimface bench``):
    its help on stderr, exit 2 (a usage error), the same for every group."""
    parser.print_help(sys.stderr)
    return 2


# --------------------------------------------------------------------------- output
def result_stream(json_dest: str | None) -> TextIO:
    """Where a command's human-readable result goes: stdout, unless stdout carries the
    JSON (``--json`` without a file), then stderr."""
    return sys.stderr if json_dest == "-" else sys.stdout


def print_result(json_dest: str | None, *blocks: str | None) -> None:
    """Print human result ``blocks`` (tables, verdicts, one-line summaries) where
    :func:`result_stream` says; empty blocks are skipped."""
    out = result_stream(json_dest)
    for block in blocks:
        if block:
            print(block, file=out)
    out.flush()


def emit_result(json_dest: str | None, obj: Any, *blocks: str | None) -> None:
    """A command's result: the human ``blocks`` (:func:`print_result`), then ``obj`` as
    JSON to ``json_dest`` when ``--json`` was given."""
    print_result(json_dest, *blocks)
    emit_json(obj, json_dest)


def emit_json(obj: Any, dest: str | None) -> None:
    """Write ``obj`` as JSON to ``dest`` ('-' = stdout); no-op when ``dest`` is None."""
    if dest is None:
        return
    text = json.dumps(obj, indent=2, sort_keys=False, default=_default) + "\n"
    if dest == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_text(Path(dest), text)


def _default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # numpy arrays and scalars alike (.item() fails on arrays)
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def format_box(box: Sequence[float] | None) -> str:
    """A face's box as human result lines show it: whole pixels, left top right bottom."""
    return "the centre crop" if box is None else "(" + ", ".join(f"{v:.0f}" for v in box) + ")"


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None,
                 title: str | None = None) -> str:
    """A plain aligned text table, floats to 4 significant digits, ``title`` above it."""
    if not rows:
        return "\n".join(filter(None, [title, "(no rows)"]))
    cols = list(columns or rows[0].keys())

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
        return "" if v is None else str(v)

    body = [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    table = [line(cols), line(["-" * w for w in widths]), *map(line, body)]
    return "\n".join([title, *table] if title else table)

