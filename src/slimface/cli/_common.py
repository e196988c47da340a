"""Small helpers every CLI topic shares: JSON output and human tables."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from slimface.io.atomic import atomic_write_text


def add_json_arg(parser: Any) -> None:
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="OUT",
                        help="write one JSON object to OUT (stdout when OUT is omitted)")


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


def emit_json(obj: Any, dest: str | None) -> None:
    """Write ``obj`` as JSON to ``dest`` ('-' = stdout); no-op when ``dest`` is None."""
    if dest is None:
        return
    text = json.dumps(obj, indent=2, sort_keys=False, default=_default) + "\n"
    if dest == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(Path(dest), text)


def _default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # numpy arrays and scalars alike (.item() fails on arrays)
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain aligned text table (for stderr / README), floats to 4 significant digits."""
    if not rows:
        return "(no rows)"
    cols = list(columns or rows[0].keys())

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
        return "" if v is None else str(v)

    body = [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths]), *map(line, body)])


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None,
                title: str | None = None) -> None:
    if title:
        print(title, file=sys.stderr)
    print(format_table(rows, columns), file=sys.stderr)
