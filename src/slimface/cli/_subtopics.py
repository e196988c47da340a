"""Commands with sub-commands contributed by several modules (``bench``, ``compress``).

``register_group(sub, "bench", (bench_kernels, bench_train, ...), help)`` lets each module
(``slimface.cli.bench_kernels`` etc.) add itself to the group's sub-parsers, so each feature
owns its command in its own file.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any, Iterable

from slimface.cli._common import group_usage


def register_group(sub: Any, group: str, members: Iterable[ModuleType], help_text: str) -> None:
    parser = sub.add_parser(group, help=help_text, description=help_text)
    inner = parser.add_subparsers(dest=f"{group}_command", metavar="WHAT")
    parser.set_defaults(func=lambda args: group_usage(parser))
    for module in members:
        module.register(inner)

