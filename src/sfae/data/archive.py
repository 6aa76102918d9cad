"""Safe extraction of a dataset zip."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath

from sfae.errors import SfaeError


def _check_member(archive: Path, info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
        raise SfaeError(f"{archive}: refusing member {name!r}: it would extract outside the target")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise SfaeError(f"{archive}: refusing member {name!r}: it is a symbolic link")


def extract_zip(archive: Path, target: Path) -> None:
    """Extract archive into target after checking every member and every CRC."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            for info in members:
                _check_member(archive, info)
            broken = bundle.testzip()
            if broken is not None:
                raise SfaeError(f"{archive}: member {broken!r} is corrupt (CRC mismatch)")
            bundle.extractall(target)
    except zipfile.BadZipFile as error:
        raise SfaeError(
            f"{archive}: not a valid zip file ({error}); truncated download?"
        ) from error
    except (EOFError, zipfile.LargeZipFile, OSError) as error:
        raise SfaeError(f"{archive}: cannot be read ({error}); truncated download?") from error
