"""-o table|json|yaml: one data structure per command, printed for people or machines."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import yaml

FORMATS = ("table", "json", "yaml")


def emit(
    data: dict[str, Any],
    fmt: str,
    table: Callable[[dict[str, Any]], str],
    out: TextIO | None = None,
) -> None:
    out = out or sys.stdout
    if fmt == "json":
        out.write(json.dumps(data, indent=2) + "\n")
    elif fmt == "yaml":
        out.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    else:
        text = table(data)
        out.write(text if text.endswith("\n") else text + "\n")
    out.flush()


def columns(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """kubectl-style columns: upper-case headers, three spaces between columns."""
    cells = [[str(h).upper() for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def note(message: str) -> None:
    """A progress or advice line on stderr, so stdout stays the command's answer."""
    print(message, file=sys.stderr, flush=True)
