"""Outputs appear whole or not at all: write beside the target, then rename into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _make_parents(path: Path) -> list[Path]:
    """Create the missing parents of path; return them, deepest first, for clean-up."""
    created = []
    parent = path.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    for folder in reversed(created):
        folder.mkdir()
    return created


def _remove_if_empty(folders: list[Path]) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def staged_outputs(*targets: Path) -> Iterator[list[Path]]:
    """Yield one temporary path per target; on success rename each into place.

    A target is a file or a folder: whatever the body writes at its temporary path.
    On any error the temporaries (and parent folders made for them) are removed and
    existing targets are left as they were.
    """
    created: list[Path] = []
    staged: list[Path] = []
    try:
        for target in targets:
            created += _make_parents(target)
            staged.append(Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.")))
        temporaries = [folder / target.name for folder, target in zip(staged, targets, strict=True)]
        yield temporaries
        for temporary, target in zip(temporaries, targets, strict=True):
            if not temporary.exists():
                raise FileNotFoundError(f"{target}: the stage wrote nothing there")
        for temporary, target in zip(temporaries, targets, strict=True):
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(temporary, target)
    finally:
        for folder in staged:
            shutil.rmtree(folder, ignore_errors=True)
        _remove_if_empty(created)
