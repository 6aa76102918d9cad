"""Small markdown and wording helpers that every report shares."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a markdown table; cells are made safe to hold `|` and newlines."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]


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


def time_unit(seconds: float) -> tuple[float, str, int]:
    """(seconds per unit, unit name, decimals) that reads best for a duration this long."""
    if seconds < 120:
        return 1.0, "s", 0
    if seconds < 7200:
        return 60.0, "min", 1
    return 3600.0, "h", 2


def duration(seconds: float, unit: tuple[float, str, int] | None = None) -> str:
    size, name, decimals = unit or time_unit(seconds)
    return f"{seconds / size:.{decimals}f} {name}"


def replace_block(text: str, name: str, body: str) -> str:
    """text with the lines between `<!-- name:start -->` and `<!-- name:end -->` replaced by
    body: how a report keeps the README's numbers generated, never typed."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"needs exactly one {start} ... {end} block")
    head, rest = text.split(start)
    return f"{head}{start}\n{body.rstrip()}\n{end}{rest.split(end)[1]}"
