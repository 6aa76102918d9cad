"""Outputs appear whole or not at all: write to a staging folder, then rename into place.

Each target is staged in a folder `<name>.<8 random characters>` (tempfile.mkdtemp's names),
locked (flock) while its writer lives: in a DVC repository's ignored `.dvc/tmp/sfae-staging/`
when that is on the target's mount (the rename stays atomic), else beside the target as
`.<name>.<8 random characters>`. A writer killed outright cannot remove its folder, and DVC
may restore the stage's outputs from its run cache without running it again: so every writer
removes the unlocked (dead writers') folders of the shared area, and of its own targets beside
them. A live writer's folder is locked: no writer removes what is still being written.
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
# Where a DVC repository's staging folders live, below its root: DVC's temp folder, which
# .dvc/.gitignore ignores and DVC never tracks.
SHARED_STAGING = Path(".dvc", "tmp", "sfae-staging")

# OSErrors of writing that the user can fix, and how to say them.
_WRITE_FAILURES = {
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "not writable (permission denied)",
    errno.EPERM: "not writable (operation not permitted)",
    errno.EROFS: "not writable (read-only file system)",
}


def shared_staging_area(target: Path) -> Path | None:
    """The staging area of the innermost DVC repository (a folder with a .dvc folder) that
    holds target; None outside one."""
    with contextlib.suppress(OSError):
        folder = target.parent.resolve()
        for root in (folder, *folder.parents):
            if (root / ".dvc").is_dir():
                return root / SHARED_STAGING
    return None


def is_staging_folder(path: Path, target: Path) -> bool:
    """Whether path is named as staged_outputs names the staging folders of target: beside
    target, or in its repository's shared staging area."""
    beside, shared = f".{target.name}.", f"{target.name}."
    if path.parent == target.parent and path.name.startswith(beside):
        return _RANDOM_PART.fullmatch(path.name[len(beside) :]) is not None
    if path.name.startswith(shared) and path.parent == shared_staging_area(target):
        return _RANDOM_PART.fullmatch(path.name[len(shared) :]) is not None
    return False


def _is_any_staging_folder(path: Path) -> bool:
    name, dot, random_part = path.name.rpartition(".")
    return bool(name and dot) and _RANDOM_PART.fullmatch(random_part) is not None


def _remove_unlocked(folder: Path, is_staging) -> None:
    """Remove the staging folders in folder (those is_staging names) that no live writer holds."""
    with contextlib.suppress(OSError):
        candidates = [c for c in sorted(folder.iterdir()) if is_staging(c) and not c.is_symlink()]
        for candidate in candidates:
            try:
                descriptor = os.open(candidate, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                continue  # gone meanwhile, or not a folder
            try:
                with contextlib.suppress(OSError):  # a live writer's, locked
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    shutil.rmtree(candidate, ignore_errors=True)
            finally:
                os.close(descriptor)


def _locked_staging_folder(where: Path, prefix: str) -> tuple[Path, int]:
    """A new staging folder in where and an open descriptor holding its lock."""
    while True:
        folder = Path(tempfile.mkdtemp(dir=where, prefix=prefix))
        try:
            descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue  # removed as stale before we opened it: make another
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        # Blocks only while another writer's clean-up holds it, before it removes it.
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        if os.fstat(descriptor).st_nlink > 0:
            return folder, descriptor
        os.close(descriptor)  # removed as stale before we locked it: make another


def _renames_into(folder: Path, target: Path) -> bool:
    """Whether a rename from folder to target's folder can succeed: the same mount.

    Renaming a name that does not exist says so without touching anything: ENOENT on one
    mount, EXDEV across two (which a bind mount of the same file system also is).
    """
    try:
        os.rename(folder / target.name, target.parent / f".{target.name}.rename-probe")
    except OSError as error:
        return error.errno == errno.ENOENT
    return False  # cannot happen: the folder is new, empty and ours


def _shared_staging_folder(target: Path) -> tuple[Path, int] | None:
    """A locked staging folder of target in its repository's shared area, or None where it
    has none (outside DVC, another mount, not writable)."""
    area = shared_staging_area(target)
    if area is None:
        return None
    try:
        existing = next(folder for folder in (area, *area.parents) if folder.exists())
        if existing.stat().st_dev != target.parent.stat().st_dev:
            return None  # another file system: leave it untouched
        area.mkdir(parents=True, exist_ok=True)
        _remove_unlocked(area, _is_any_staging_folder)  # those of killed writers
        folder, descriptor = _locked_staging_folder(area, f"{target.name}.")
    except OSError:
        return None
    if _renames_into(folder, target):
        return folder, descriptor
    shutil.rmtree(folder, ignore_errors=True)
    os.close(descriptor)
    return None


def _staging_folder(target: Path) -> tuple[Path, int]:
    """A locked staging folder of target: in the shared area where it can, else beside it."""
    # Beside it: outside DVC, or left by an older sfae.
    _remove_unlocked(target.parent, lambda folder: is_staging_folder(folder, target))
    shared = _shared_staging_folder(target)
    if shared is not None:
        return shared
    return _locked_staging_folder(target.parent, f".{target.name}.")


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
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        names = _full_targets(targets, staged) if full else list(targets)
        return SfaeError(f"{', '.join(map(str, names))}: {what}; nothing was written")
    failed = Path(os.fsdecode(error.filename))
    # A staging folder means nothing to the user: name its target (or the old output,
    # being replaced, or the folder it lives in).
    pairs = zip(staged, targets, strict=True)
    named = [target for folder, target in pairs if failed.is_relative_to(folder)]
    named += [
        target
        for target in targets
        if is_staging_folder(failed, target)
        or failed == target.parent
        or failed.is_relative_to(target)
    ]
    if not named and error.errno in (errno.EACCES, errno.EPERM):
        what = "permission denied"  # an input, perhaps: do not call it an output
    return SfaeError(f"{named[0] if named else failed}: {what}; nothing was written")


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
                created += [parent for parent in target.parents if not parent.exists()]
                target.parent.mkdir(parents=True, exist_ok=True)
                folder, descriptor = _staging_folder(target)
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
        for folder in created:  # the parents made for the targets, deepest first, if empty
            with contextlib.suppress(OSError):
                folder.rmdir()
