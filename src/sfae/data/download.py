"""Install a dataset (a mirror's or a downloaded zip, extracted safely, verified) in data/raw/."""

import os
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from sfae.atomic import staged_outputs
from sfae.data.sources import Dataset
from sfae.errors import SfaeError
from sfae.paths import MIRROR_ENV


def http_session(retries: int = 4, backoff: float = 1.0) -> requests.Session:
    statuses = (429, 500, 502, 503, 504)
    retry = Retry(
        total=retries, backoff_factor=backoff, status_forcelist=statuses, allowed_methods=("GET",)
    )
    session = requests.Session()
    for scheme in ("http://", "https://"):
        session.mount(scheme, HTTPAdapter(max_retries=retry))
    return session


def download(url: str, destination: Path, session=None, timeout: float = 30.0) -> None:
    session = session or http_session()
    name = destination.name
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=f".{name}.") as work:
        partial = Path(work, name)
        with partial.open("wb") as out:
            try:
                response = session.get(url, stream=True, timeout=timeout)
                response.raise_for_status()
                expected = int(response.headers.get("content-length", 0)) or None
                with tqdm(total=expected, unit="B", unit_scale=True, desc=name) as bar:
                    for chunk in response.iter_content(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
                # Content-Length counts the bytes sent, before any Content-Encoding is undone.
                received = response.raw.tell()
            except requests.RequestException as error:
                raise SfaeError(f"{url}: download failed ({error})") from error
        if expected is not None and received != expected:
            raise SfaeError(f"{url}: download incomplete, {received} of {expected} bytes")
        os.replace(partial, destination)


def obtain_zip(zip_name: str, url: str, workdir: Path) -> Path:
    """zip_name in the mirror when SFAE_DATA_MIRROR is set, else downloaded to workdir."""
    if not (value := os.environ.get(MIRROR_ENV, "").strip()):
        download(url, workdir / zip_name)
        return workdir / zip_name
    mirror = Path(value).expanduser()
    if not mirror.is_dir():
        raise SfaeError(f"{mirror}: {MIRROR_ENV} names no folder")
    if not (source := mirror / zip_name).is_file():
        raise SfaeError(f"{source}: not found in the data mirror ({MIRROR_ENV}={mirror})")
    return source


def extract_zip(archive: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as bundle:
            for info in bundle.infolist():
                name = info.filename
                parts = PurePosixPath(name.replace("\\", "/")).parts
                if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
                    outside = "it would extract outside the target"
                    raise SfaeError(f"{archive}: refusing member {name!r}: {outside}")
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise SfaeError(f"{archive}: refusing member {name!r}: it is a symbolic link")
            broken = bundle.testzip()
            if broken is not None:
                raise SfaeError(f"{archive}: member {broken!r} is corrupt (CRC mismatch)")
            bundle.extractall(target)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, OSError) as error:
        what = "not a valid zip file" if isinstance(error, zipfile.BadZipFile) else "cannot be read"
        raise SfaeError(f"{archive}: {what} ({error}); truncated download?") from error


def install(dataset: Dataset, destination: Path) -> None:
    """Fetch, extract and verify a dataset; only a verified copy replaces destination."""
    with (
        staged_outputs(destination) as (staged,),
        tempfile.TemporaryDirectory(dir=staged.parent) as work,
    ):
        archive = obtain_zip(dataset.zip_name, dataset.url, Path(work))
        # A downloaded zip lives in the work folder, deleted on the way out: name its URL.
        origin = dataset.url if archive.is_relative_to(work) else str(archive)
        extract_zip(archive, Path(work) / "extracted")
        extracted = Path(work) / "extracted" / dataset.folder
        if not extracted.is_dir():
            raise SfaeError(f"{origin}: has no top-level folder {dataset.folder}/")
        try:
            dataset.verify(extracted)
        except SfaeError as error:
            # The extracted copy goes too: name the bad file as a member of the zip.
            inside = f"{extracted.parent}{os.sep}"
            raise SfaeError(str(error).replace(inside, f"{origin}: ")) from None
        extracted.rename(staged)
