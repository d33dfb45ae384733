"""Terminal tables that fit the console: of ``kernbench compare`` and of a sweep's end.

Rich squeezes a table wider than the console by shrinking every column, so at 80 columns
metric columns shrank to nothing and numbers wrapped. :func:`fitted_tables` never squeezes a
value: a column is as wide as its widest cell, a metric name in a header breaks after its
``/``, and when the columns do not fit they go to further tables, each repeating the key
columns (run, id, ...). Optional columns (``optional``) are left out first. A key column that
holds long names can instead be wrapped after its ``/`` (``wrap_key``), as ``compare diff``
does with metric names.
"""

import os
import re
from collections.abc import Sequence
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from kernbench.report.markdown import fmt_cell

# Piped output (CI logs, tests) gets a fixed width so tables are stable.
PIPED_WIDTH_CHARS = 160
MIN_KEY_WIDTH = 12
UNCONSTRAINED_WIDTH = 100_000


def output_console(file: TextIO | None = None) -> Console:
    """A console for tables: the terminal's width (or ``COLUMNS``), 160 when piped."""
    console = Console(file=file, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH_CHARS
    return console


def print_tables(
    console: Console,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    **kwargs: Any,
) -> None:
    """:func:`fitted_tables` printed on ``console``."""
    for table in fitted_tables(console, title, columns, rows, **kwargs):
        console.print(table)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def wrap_path(name: str, width: int) -> str:
    """``name`` on lines of at most ``width`` characters, broken after a ``/`` where it can
    be, else folded."""
    if width < 1 or len(name) <= width:
        return name
    parts = [p + "/" for p in name.split("/")]
    parts[-1] = parts[-1][:-1]
    lines = [""]
    for part in parts:
        while part:
            room = width - len(lines[-1])
            if len(part) <= room:
                lines[-1] += part
                part = ""
            elif lines[-1]:
                lines.append("")
            else:
                lines[-1], part = part[:width], part[width:]
                lines.append("")
    return "\n".join(line for line in lines if line)


# Where a header may break: after a path or key separator, then, if that is not narrow
# enough, after a word of a name too.
BREAKS = ("/.", "/._")
UNIT_CHARS = 3  # _ns, _s, _gbs


def _header(column: str, cell_width: int, level: int) -> str:
    """A metric or param name as a header no wider than its longest part (broken after the
    characters of ``BREAKS[level - 1]``) or the column's widest cell, whichever is wider;
    level 0 leaves it whole."""
    if level == 0:
        return column
    chars = re.escape(BREAKS[level - 1])
    parts = re.findall(rf"[^{chars}]*[{chars}]|[^{chars}]+$", column)
    if len(parts) > 1 and parts[-2].endswith("_") and len(parts[-1]) <= UNIT_CHARS:
        parts[-2:] = [parts[-2] + parts[-1]]  # a unit stays with its name: latency_ns
    width = max(cell_width, *(len(p) for p in parts))
    lines = [""]
    for part in parts:
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


class _Layout:
    def __init__(
        self,
        console: Console,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        styles: Sequence[str],
        keep: int,
    ):
        self.console = console
        self.columns = list(columns)
        self.cells = [[fmt_cell(v) for v in row] for row in rows]
        self.styles = list(styles)
        self.keep = keep
        self.header_level = 0
        self.widths = [max((len(r[i]) for r in self.cells), default=0) for i in range(len(columns))]
        self.numeric = []
        for i in range(len(columns)):
            values = [r[i] for r in rows if r[i] is not None]
            self.numeric.append(bool(values) and all(is_number(v) for v in values))

    def table(
        self, title: str | None, indices: Sequence[int], key_width: int | None = None
    ) -> Table:
        table = Table(
            title=title,
            title_justify="left",
            title_style="bold",
            box=box.SIMPLE_HEAD,
            # Columns two spaces apart (rich's default is three), none at the edges.
            padding=(0, 0, 0, 1),
            pad_edge=False,
            show_edge=False,
        )
        for i in indices:
            key = i < self.keep
            wrapped = key and key_width is not None and i == 0
            level = 0 if key else self.header_level
            header = _header(self.columns[i], self.widths[i], level)
            table.add_column(
                escape(header),
                justify="right" if self.numeric[i] else "left",
                no_wrap=not wrapped,
                overflow="fold" if wrapped else "ellipsis",
            )
        for r, row in enumerate(self.cells):
            cells = [row[i] for i in indices]
            if key_width is not None:
                cells[0] = wrap_path(cells[0], key_width)
            style = self.styles[r] if r < len(self.styles) else ""
            table.add_row(*(escape(c) for c in cells), style=style or None)
        return table

    def width(self, indices: Sequence[int], key_width: int | None = None) -> int:
        table = self.table(None, indices, key_width)
        # Measured unconstrained: its natural width, which the console's width would cap.
        options = self.console.options.update_width(UNCONSTRAINED_WIDTH)
        return Measurement.get(self.console, options, table).maximum


def _pages(layout: _Layout, keys: list[int], values: list[int], limit: int) -> list[list[int]]:
    """The value columns in order, as many to a table as fit beside the keys."""
    pages: list[list[int]] = []
    for i in values:
        if pages and layout.width(keys + pages[-1] + [i]) <= limit:
            pages[-1].append(i)
        else:
            pages.append([i])
    return pages


def fitted_tables(
    console: Console,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    keep: int = 1,
    optional: Sequence[str] = (),
    styles: Sequence[str] = (),
    wrap_key: bool = False,
) -> list[Table]:
    """``rows`` under ``columns`` as one or more tables no wider than ``console``.

    The first ``keep`` columns are keys, repeated in every table; ``optional`` names columns
    dropped, in order, before the others are split over several tables; ``wrap_key`` wraps the
    first column's values after their ``/`` to the room the others leave. A missing value
    (None) is a blank cell; ``styles`` colours whole rows."""
    layout = _Layout(console, columns, rows, styles, keep)
    limit = console.width
    indices = list(range(len(columns)))
    if layout.width(indices) <= limit:
        return [layout.table(title, indices)]
    layout.header_level = 1
    for name in optional:
        if layout.width(indices) <= limit:
            break
        if name in columns:
            indices.remove(columns.index(name))
    keys = [i for i in indices if i < keep]
    values = [i for i in indices if i >= keep]
    if wrap_key and keys == [0] and layout.width(indices) > limit:
        # The other columns keep their widths; the names take what is left, at least a few
        # characters, so the numbers never wrap.
        longest = max((len(r[0]) for r in layout.cells), default=0)
        room = max(longest - (layout.width(indices) - limit), MIN_KEY_WIDTH)
        return [layout.table(title, indices, key_width=room)]
    pages = _pages(layout, keys, values, limit)
    if len(pages) > 1:
        # Split over several tables anyway: try headers broken between words, if fewer.
        layout.header_level = 2
        narrower = _pages(layout, keys, values, limit)
        if len(narrower) < len(pages):
            pages = narrower
        else:
            layout.header_level = 1
    if not pages:
        return [layout.table(title, keys)]
    tables = []
    for n, page in enumerate(pages, 1):
        part = title if len(pages) == 1 else f"{title} [{n}/{len(pages)}]"
        tables.append(layout.table(part, keys + page))
    return tables
