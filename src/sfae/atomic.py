"""Outputs appear whole or not at all: write beside the target, then rename into place.

Each target is staged in a folder `.<name>.<8 random characters>` (tempfile.mkdtemp's names)
beside it, locked (flock) for as long as its writer lives. A writer killed outright (kill -9,
power cut) cannot remove its folder, so every writer first removes the unlocked staging folders
of its own targets: those a dead writer left. A live writer's folder is locked, and another
target's folders have another name, so no writer removes what is still being written.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sfae.errors import SfaeError

# The random part of tempfile.mkdtemp's names: 8 of "a-z", "0-9" and "_".
_RANDOM_PART = re.compile(r"[a-z0-9_]{8}")

# OSErrors of writing that the user can fix, and how to say them.
_WRITE_FAILURES = {
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "not writable (permission denied)",
    errno.EPERM: "not writable (operation not permitted)",
    errno.EROFS: "not writable (read-only file system)",
}


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


def is_staging_folder(path: Path, target: Path) -> bool:
    """Whether path is named as staged_outputs names the staging folders of target."""
    prefix = f".{target.name}."
    return (
        path.parent == target.parent
        and path.name.startswith(prefix)
        and _RANDOM_PART.fullmatch(path.name[len(prefix) :]) is not None
    )


def remove_stale_staging(target: Path) -> list[Path]:
    """Remove the staging folders of target that no live writer holds; return them."""
    removed = []
    with contextlib.suppress(OSError):
        candidates = sorted(target.parent.iterdir())
        for candidate in candidates:
            if not is_staging_folder(candidate, target) or candidate.is_symlink():
                continue
            try:
                descriptor = os.open(candidate, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                continue  # gone meanwhile, or not a folder
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(descriptor)
                continue  # a live writer's
            try:
                shutil.rmtree(candidate, ignore_errors=True)
                removed.append(candidate)
            finally:
                os.close(descriptor)
    return removed


def _locked_staging_folder(target: Path) -> tuple[Path, int]:
    """A new staging folder of target and an open descriptor holding its lock."""
    while True:
        folder = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        # Blocks only while another writer's clean-up holds it, before it removes it.
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        if os.fstat(descriptor).st_nlink > 0:
            return folder, descriptor
        os.close(descriptor)  # removed as stale before we locked it: make another


def _full_targets(targets: tuple[Path, ...], staged: list[Path]) -> list[Path]:
    """The targets whose staging folders are on the file system with the least space free.

    A full disk seldom names the file (h5py, Keras): all targets when they share a disk.
    """
    free = {}
    for folder, target in zip(staged, targets, strict=False):
        with contextlib.suppress(OSError):
            status = os.statvfs(folder)
            free[target] = status.f_bavail * status.f_frsize
    if len(set(free.values())) < 2:
        return list(targets)
    least = min(free.values())
    return [target for target, space in free.items() if space == least]


def _write_failure(
    error: OSError, targets: tuple[Path, ...], staged: list[Path]
) -> SfaeError | None:
    """The SfaeError saying which output could not be written and why, or None."""
    what = _WRITE_FAILURES.get(error.errno)
    if what is None:
        return None
    if error.filename is None:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            names = _full_targets(targets, staged)
        else:
            names = list(targets)
        return SfaeError(f"{', '.join(map(str, names))}: {what}; nothing was written")
    failed = Path(os.fsdecode(error.filename))
    name = str(failed)
    for folder, target in zip(staged, targets, strict=False):
        if failed == folder or failed.is_relative_to(folder) or is_staging_folder(failed, target):
            name = str(target)  # the staging folder means nothing to the user
            break
    else:
        for target in targets:
            if (
                is_staging_folder(failed, target)
                or failed == target.parent
                or failed.is_relative_to(target)  # the old output, being replaced
            ):
                name = str(target)
                break
        else:
            if error.errno in (errno.EACCES, errno.EPERM):
                what = "permission denied"  # an input, perhaps: do not call it an output
    return SfaeError(f"{name}: {what}; nothing was written")


@contextlib.contextmanager
def staged_outputs(*targets: Path) -> Iterator[list[Path]]:
    """Yield one temporary path per target; on success rename each into place.

    A target is a file or a folder: whatever the body writes at its temporary path.
    On any error the temporaries (and parent folders made for them) are removed and
    existing targets are left as they were. A full disk or an unwritable folder, here
    or in the body, becomes an SfaeError naming the output.
    """
    created: list[Path] = []
    staged: list[Path] = []
    locks: list[int] = []
    try:
        for target in targets:
            try:
                created += _make_parents(target)
                remove_stale_staging(target)
                folder, descriptor = _locked_staging_folder(target)
            except OSError as error:
                what = _WRITE_FAILURES.get(error.errno)
                if what is None:
                    raise
                raise SfaeError(f"{target}: {what}; nothing was written") from error
            staged.append(folder)
            locks.append(descriptor)
        temporaries = [folder / target.name for folder, target in zip(staged, targets, strict=True)]
        try:
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
        except OSError as error:
            failure = _write_failure(error, targets, staged)
            if failure is None:
                raise
            raise failure from error
    finally:
        for folder in staged:
            shutil.rmtree(folder, ignore_errors=True)
        for descriptor in locks:
            os.close(descriptor)
        _remove_if_empty(created)
