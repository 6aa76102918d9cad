"""Small markdown and wording helpers that every report shares."""

from collections import Counter
from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a markdown table; cells are made safe to hold `|` and newlines."""
    safe = ([str(value).replace("|", "\\|").replace("\n", " ") for value in row] for row in rows)
    return ["| " + " | ".join(cells) + " |" for cells in [header, ["---"] * len(header), *safe]]


def paragraphs(*blocks: str | Sequence[str] | None) -> list[str]:
    """The blocks' lines (a line or a list of lines; empty ones left out), a blank line between."""
    lines: list[str] = []
    for block in filter(None, blocks):
        lines += [*([""] if lines else []), *([block] if isinstance(block, str) else block)]
    return lines


def join(items: Iterable[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    *rest, last = list(items) or [""]
    return f"{', '.join(rest)} and {last}" if rest else last


def counted(counts: set, things: str) -> str:
    """'the 85 things' when every run saw the same number of them, else 'the things'."""
    count = next(iter(counts)) if len(counts) == 1 else None
    return f"the {count} {things}" if isinstance(count, int) else f"the {things}"


def tally(values: Iterable[str], code: bool = False) -> str:
    """'x' when every run has x, else 'x (runs: 3); y (runs: 2)'; empty: "not recorded"."""
    counts = [
        ("not recorded" if not value else f"`{value}`" if code else value, n)
        for value, n in sorted(Counter(values).items())
    ]
    return counts[0][0] if len(counts) == 1 else "; ".join(f"{v} (runs: {n})" for v, n in counts)


def duration(seconds: float, longest: float | None = None) -> str:
    """seconds in the unit that reads best for `longest`, so a table's cells share one."""
    longest = seconds if longest is None else longest
    size, unit, decimals = (1.0, "s", 0) if longest < 120 else (60.0, "min", 1)
    if longest >= 7200:
        size, unit, decimals = 3600.0, "h", 2
    return f"{seconds / size:.{decimals}f} {unit}"


def replace_block(text: str, name: str, body: str) -> str:
    """text with its `<!-- name:start -->` ... `<!-- name:end -->` block's lines set to body."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"needs exactly one {start} ... {end} block")
    head, rest = text.split(start)
    return f"{head}{start}\n{body.rstrip()}\n{end}{rest.split(end)[1]}"
