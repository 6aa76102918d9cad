"""Small markdown and wording helpers that every report shares."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a markdown table; cells are made safe to hold `|` and newlines."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]


def paragraphs(*blocks: str | Sequence[str] | None) -> list[str]:
    """The lines of the blocks (a line, or a list of lines; an empty or None one is left out),
    a blank line between any two."""
    lines: list[str] = []
    for block in filter(None, blocks):
        lines += [*([""] if lines else []), *([block] if isinstance(block, str) else block)]
    return lines


def join(items: Iterable[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def counted(counts: set, things: str) -> str:
    """'the 85 things' when every run saw the same number of them, else 'the things'."""
    if len(counts) == 1 and isinstance(count := next(iter(counts)), int):
        return f"the {count} {things}"
    return f"the {things}"


def tally(values: Iterable[str], code: bool = False) -> str:
    """'x' when every run has x, else 'x (runs: 3); y (runs: 2)', sorted; `code` puts values
    in backticks. An empty value (an older record) reads "not recorded"."""
    counts = sorted(Counter(values).items())

    def shown(value: str) -> str:
        return "not recorded" if not value else f"`{value}`" if code else value

    if len(counts) == 1:
        return shown(counts[0][0])
    return "; ".join(f"{shown(value)} (runs: {n})" for value, n in counts)


# Durations below `limit` seconds: (limit, seconds per unit, unit, decimals).
UNITS = ((120, 1.0, "s", 0), (7200, 60.0, "min", 1), (math.inf, 3600.0, "h", 2))


def duration(seconds: float, longest: float | None = None) -> str:
    """seconds in the unit that reads best for `longest` (default: seconds itself): the cells
    of one table share a unit."""
    longest = seconds if longest is None else longest
    size, name, decimals = next(unit for limit, *unit in UNITS if longest < limit)
    return f"{seconds / size:.{decimals}f} {name}"


def replace_block(text: str, name: str, body: str) -> str:
    """text with the lines between `<!-- name:start -->` and `<!-- name:end -->` replaced by
    body: how a report keeps the README's numbers generated, never typed."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"needs exactly one {start} ... {end} block")
    head, rest = text.split(start)
    return f"{head}{start}\n{body.rstrip()}\n{end}{rest.split(end)[1]}"
