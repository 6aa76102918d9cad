"""Install a dataset into data/raw/: fetch its zip (mirror or web), extract it safely, verify
every file; only a verified copy replaces what was there."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sfae.atomic import staged_outputs
from sfae.data.archive import extract_zip
from sfae.data.fetch import obtain_zip
from sfae.data.sources import Dataset
from sfae.errors import SfaeError


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
