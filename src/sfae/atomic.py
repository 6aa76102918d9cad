"""Outputs appear whole or not at all: written in a staging folder (mkdtemp's, flock-ed while its
writer lives) in the DVC repository's .dvc/tmp/sfae-staging/, else beside the target, then renamed
into place. DVC may restore a killed writer's outputs: every writer removes unlocked folders."""

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

_RANDOM = "[a-z0-9_]{8}"  # tempfile.mkdtemp's
SHARED_STAGING = Path(".dvc", "tmp", "sfae-staging")
_WRITE_FAILURES = {  # the OSErrors of writing that the user can fix
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "not writable (permission denied)",
    errno.EPERM: "not writable (operation not permitted)",
    errno.EROFS: "not writable (read-only file system)",
}


def _remove_unlocked(folder: Path, name: str) -> None:
    """Remove the staging folders in folder (named as the regex name says) no live writer holds."""
    with contextlib.suppress(OSError):
        for candidate in [c for c in sorted(folder.iterdir()) if re.fullmatch(name, c.name)]:
            with contextlib.suppress(OSError):  # gone, not a folder (or a link), locked (live)
                descriptor = os.open(candidate, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
                try:
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
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # waits only on a clean-up that then removes it
        if os.fstat(descriptor).st_nlink > 0:
            return folder, descriptor
        os.close(descriptor)  # removed as stale before we locked it: make another


def _shared_staging_folder(target: Path) -> tuple[Path, int] | None:
    """A locked staging folder of target in the shared area of the innermost DVC repository (a
    folder with .dvc/) holding it, if it is usable."""
    try:
        folder = target.parent.resolve()
        root = next((r for r in (folder, *folder.parents) if (r / ".dvc").is_dir()), None)
        if root is None:
            return None
        area = root / SHARED_STAGING
        existing = next(folder for folder in (area, *area.parents) if folder.exists())
        if existing.stat().st_dev != target.parent.stat().st_dev:
            return None  # another file system: leave it untouched
        area.mkdir(parents=True, exist_ok=True)
        _remove_unlocked(area, rf"(?s).+\.{_RANDOM}")  # killed writers'
        # Renaming no file touches nothing: ENOENT on one mount, EXDEV across two (bind mounts too).
        with contextlib.suppress(FileNotFoundError):
            os.rename(area / f"{target.name}.rename-probe", target.parent / ".rename-probe")
            return None  # cannot happen: nothing makes that name
        return _locked_staging_folder(area, f"{target.name}.")
    except OSError:
        return None


def _write_failure(error: OSError, targets: tuple[Path, ...], staged: list[Path]) -> None:
    """Raise the SfaeError naming the output that could not be written, if the user can fix it."""
    if (what := _WRITE_FAILURES.get(error.errno)) is None:
        return
    if error.filename is None:  # h5py and Keras name no file: those on the fullest disk
        named = list(targets)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            free = {}
            for folder, target in zip(staged, targets, strict=True):
                with contextlib.suppress(OSError):
                    free[target] = (status := os.statvfs(folder)).f_bavail * status.f_frsize
            if len(set(free.values())) > 1:
                named = [target for target, space in free.items() if space == min(free.values())]
        raise SfaeError(f"{', '.join(map(str, named))}: {what}; nothing was written") from error
    failed = Path(os.fsdecode(error.filename))
    # The target of a staging folder (meaningless to the user), of its old output or its folder.
    named = [t for f, t in zip(staged, targets, strict=True) if failed.is_relative_to(f)]
    named += [t for t in targets if failed == t.parent or failed.is_relative_to(t)]
    if not named and error.errno in (errno.EACCES, errno.EPERM):
        what = "permission denied"  # an input, perhaps: do not call it an output
    raise SfaeError(f"{named[0] if named else failed}: {what}; nothing was written") from error


@contextlib.contextmanager
def staged_outputs(*targets: Path) -> Iterator[list[Path]]:
    """A temporary path per target (file or folder), renamed into place on success; on an error
    the targets stay as they were, and a full disk or unwritable folder is an SfaeError."""
    created, staged = [], []  # staged: (folder, descriptor holding its lock) per target
    try:
        for target in targets:
            try:
                created += [parent for parent in target.parents if not parent.exists()]
                target.parent.mkdir(parents=True, exist_ok=True)
                # Beside it: outside DVC, or left by an older sfae.
                _remove_unlocked(target.parent, re.escape(f".{target.name}.") + _RANDOM)
                shared = _shared_staging_folder(target)
                staged.append(shared or _locked_staging_folder(target.parent, f".{target.name}."))
            except OSError as error:
                if what := _WRITE_FAILURES.get(error.errno):
                    raise SfaeError(f"{target}: {what}; nothing was written") from error
                raise
        temporaries = [f / t.name for (f, _), t in zip(staged, targets, strict=True)]
        try:
            yield temporaries
            if lost := [t for f, t in zip(temporaries, targets, strict=True) if not f.exists()]:
                raise FileNotFoundError(f"{lost[0]}: the stage wrote nothing there")
            for temporary, target in zip(temporaries, targets, strict=True):
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                elif target.exists() or target.is_symlink():
                    target.unlink()
                os.replace(temporary, target)
        except OSError as error:
            _write_failure(error, targets, [temporary.parent for temporary in temporaries])
            raise
    finally:
        for folder, lock in staged:
            shutil.rmtree(folder, ignore_errors=True)
            os.close(lock)
        for folder in created:  # the parents made for the targets, deepest first, if empty
            with contextlib.suppress(OSError):
                folder.rmdir()
