"""Text and JSON output for people and scripts: one home for tables and key/value blocks.

Every command's ``--json`` goes through :func:`json_text`; every table through
:func:`table`, every "key  value" block through :func:`fields`.  Pure functions: they
return text and print nothing (printing is the front end's job).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

__all__ = ["fields", "json_text", "payload_text", "table"]


def table(rows: Sequence[Sequence[str]], *, indent: str = "", align: str = "") -> str:
    """``rows`` as columns two spaces apart, each as wide as its widest cell.

    ``align`` gives one character per column, ``<`` (left, the default for columns
    not named) or ``>`` (right, for numbers).  Trailing spaces are removed.
    """
    if not rows:
        return ""
    ncols = max(len(r) for r in rows)
    widths = [max(len(r[i]) if i < len(r) else 0 for r in rows) for i in range(ncols)]
    lines = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            right = i < len(align) and align[i] == ">"
            cells.append(cell.rjust(widths[i]) if right else cell.ljust(widths[i]))
        lines.append((indent + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def fields(rows: Sequence[tuple[str, str]], *, indent: str = "  ", width: int = 0) -> list[str]:
    """``key  value`` lines, the keys padded to the widest (at least ``width``)."""
    width = max([width, *(len(key) for key, _ in rows)])
    return [f"{indent}{key.ljust(width)}  {value}".rstrip() for key, value in rows]


def json_text(value: object) -> str:
    """``value`` as indented JSON (what every ``--json`` prints)."""
    return json.dumps(value, indent=2)


def payload_text(data: bytes, force_hex: bool = False) -> str:
    """A message for people: its text quoted if it is printable UTF-8, else hex bytes."""
    if not force_hex:
        try:
            text = data.decode()
        except UnicodeDecodeError:
            pass
        else:
            if text.isprintable():
                return repr(text)
    return data.hex(" ")
