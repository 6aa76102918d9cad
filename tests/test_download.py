"""Getting the datasets: safe zip extraction, HTTP download, the mirror, install, the stage."""

from __future__ import annotations

import dataclasses
import gzip
import http.server
import os
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from sfae.data.download import download, extract_zip, http_session, install, obtain_zip
from sfae.data.sources import (
    Dataset,
    load_mall_annotations,
    load_mall_geometry,
    verify_mall,
    verify_pennfudan,
)
from sfae.errors import SfaeError
from sfae.paths import MIRROR_ENV

# ---------------------------------------------------------------- synthetic datasets

PENNFUDAN_NAMES = ("FudanPed00001", "FudanPed00002", "PennPed00001")
PENNFUDAN_SIZES = ((40, 30), (32, 48), (50, 50))  # (width, height)


def write_pennfudan(parent: Path) -> Path:
    """A 3-image Penn-Fudan tree: RGB PNGs and same-size masks with ids 0..N."""
    root = parent / "PennFudanPed"
    (root / "PNGImages").mkdir(parents=True)
    (root / "PedMasks").mkdir()
    rng = np.random.default_rng(0)
    for index, (name, (width, height)) in enumerate(
        zip(PENNFUDAN_NAMES, PENNFUDAN_SIZES, strict=True)
    ):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "PNGImages" / f"{name}.png")
        mask = np.zeros((height, width), np.uint8)
        mask[2:10, 2:10] = 1
        if index:  # a second pedestrian in all but the first image
            mask[12:20, 12:20] = 2
        Image.fromarray(mask, mode="L").save(root / "PedMasks" / f"{name}_mask.png")
    (root / "readme.txt").write_text("synthetic\n")
    return root


MALL_HEADS = (
    np.array([[10.5, 20.0], [600.0, 470.25]]),
    np.array([[320.0, 240.0]]),
    np.array([[1.0, 2.0], [3.0, 4.0], [630.0, 17.5]]),
)


def write_mall(parent: Path, frames: int = 3) -> Path:
    """A Mall tree: 640x480 JPEG frames, mall_gt.mat and perspective_roi.mat as in the real one."""
    root = parent / "mall_dataset"
    (root / "frames").mkdir(parents=True)
    for number in range(1, frames + 1):
        pixels = np.full((480, 640, 3), 40 * number, np.uint8)
        Image.fromarray(pixels).save(root / "frames" / f"seq_{number:06d}.jpg", quality=90)
    cells = np.empty((1, len(MALL_HEADS)), dtype=object)
    for index, points in enumerate(MALL_HEADS):
        cells[0, index] = {"loc": points}
    counts = np.array([[len(points)] for points in MALL_HEADS], dtype=np.uint8)
    scipy.io.savemat(root / "mall_gt.mat", {"count": counts, "frame": cells})
    roi = np.zeros((480, 640), np.uint8)
    roi[100:400, 50:600] = 1
    perspective = np.tile(np.linspace(1.0, 10.0, 480)[:, None], (1, 640))
    scipy.io.savemat(root / "perspective_roi.mat", {"roi": {"mask": roi}, "pMapN": perspective})
    return root


def zip_tree(root: Path, archive: Path) -> Path:
    """Zip root with its own folder name as the top-level folder, as the real zips are."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                bundle.write(path, path.relative_to(root.parent).as_posix())
    return archive


def test_synthetic_mall_reads_back_through_the_loaders(tmp_path: Path) -> None:
    root = write_mall(tmp_path)
    heads, counts = load_mall_annotations(root)
    assert counts.tolist() == [2, 1, 3]
    assert len(heads) == 3
    for read, written in zip(heads, MALL_HEADS, strict=True):
        np.testing.assert_array_equal(read, written)
    roi, perspective = load_mall_geometry(root)
    assert roi.shape == perspective.shape == (480, 640)
    assert roi.dtype == np.uint8 and roi.sum() == 300 * 550
    assert perspective[0, 0] == 1.0 and perspective[-1, -1] == 10.0
    verify_mall(root, expected=3)


# ---------------------------------------------------------------- archive.extract_zip


@pytest.fixture
def good_zip(tmp_path: Path) -> Path:
    archive = tmp_path / "good.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("top/a.txt", "alpha\n")
        bundle.writestr("top/sub/b.bin", bytes(range(256)) * 40)
    return archive


def only_zips_in(folder: Path) -> bool:
    """True when folder holds nothing but the test's zip files (nothing was extracted)."""
    return all(path.suffix == ".zip" for path in folder.rglob("*"))


def test_extract_zip_extracts_every_member(good_zip: Path, tmp_path: Path) -> None:
    target = tmp_path / "out"
    extract_zip(good_zip, target)
    assert (target / "top" / "a.txt").read_text() == "alpha\n"
    assert (target / "top" / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 40


def test_extract_zip_refuses_a_truncated_zip(good_zip: Path, tmp_path: Path) -> None:
    data = good_zip.read_bytes()
    good_zip.write_bytes(data[: len(data) // 2])
    with pytest.raises(SfaeError, match="truncated") as caught:
        extract_zip(good_zip, tmp_path / "out")
    assert str(good_zip) in str(caught.value)
    assert only_zips_in(tmp_path)


def test_extract_zip_refuses_a_file_that_is_no_zip(tmp_path: Path) -> None:
    archive = tmp_path / "fake.zip"
    archive.write_text("<html>404 Not Found</html>\n")
    with pytest.raises(SfaeError) as caught:
        extract_zip(archive, tmp_path / "out")
    assert str(archive) in str(caught.value)
    assert only_zips_in(tmp_path)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_extract_zip_refuses_a_member_with_a_bad_crc(tmp_path: Path, compression: int) -> None:
    payload = bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8))
    archive = tmp_path / "corrupt.zip"
    with zipfile.ZipFile(archive, "w", compression) as bundle:
        bundle.writestr("top/ok.txt", "fine\n")
        bundle.writestr("top/data.bin", payload)
    with zipfile.ZipFile(archive) as bundle:
        info = bundle.getinfo("top/data.bin")
    data = bytearray(archive.read_bytes())
    # The member's data follows its 30-byte local header, its name and its extra field.
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    middle = start + info.compress_size // 2
    data[middle : middle + 4] = bytes(b ^ 0xFF for b in data[middle : middle + 4])
    archive.write_bytes(bytes(data))
    with pytest.raises(SfaeError) as caught:
        extract_zip(archive, tmp_path / "out")
    assert str(archive) in str(caught.value)
    assert only_zips_in(tmp_path), "a corrupt zip must not be half extracted"


@pytest.mark.parametrize(
    "member",
    ["../evil.txt", "top/../../evil.txt", "..\\evil.txt", "C:/evil.txt", "ABSOLUTE"],
)
def test_extract_zip_refuses_members_outside_the_target(tmp_path: Path, member: str) -> None:
    if member == "ABSOLUTE":
        member = (tmp_path / "absolute_evil.txt").as_posix()
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("top/good.txt", "good\n")
        bundle.writestr(zipfile.ZipInfo(member), "evil\n")
    with pytest.raises(SfaeError, match="outside the target") as caught:
        extract_zip(archive, tmp_path / "a" / "out")
    assert str(archive) in str(caught.value)
    assert only_zips_in(tmp_path), "nothing, not even the good member, may be extracted"


def test_extract_zip_refuses_a_symbolic_link_member(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("top/good.txt", "good\n")
        link = zipfile.ZipInfo("top/passwd")
        link.external_attr = 0o120777 << 16
        bundle.writestr(link, "/etc/passwd")
    with pytest.raises(SfaeError, match="symbolic link") as caught:
        extract_zip(archive, tmp_path / "out")
    assert str(archive) in str(caught.value) and "top/passwd" in str(caught.value)
    assert only_zips_in(tmp_path)


# ---------------------------------------------------------------- fetch: HTTP


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the name http.server calls
        self.server.hits.append(self.path)
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
        else:
            route(self)

    def log_message(self, *args: object) -> None:
        pass


def send_body(handler: http.server.BaseHTTPRequestHandler, body: bytes, **headers: str) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(headers.pop("length", len(body))))
    for key, value in headers.items():
        handler.send_header(key.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


class Server:
    """A local HTTP server; add routes as path -> handler function."""

    def __init__(self) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.routes = {}
        self.httpd.hits = []
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def routes(self) -> dict[str, Callable[[http.server.BaseHTTPRequestHandler], None]]:
        return self.httpd.routes

    @property
    def hits(self) -> list[str]:
        return self.httpd.hits


@pytest.fixture
def server() -> Iterator[Server]:
    served = Server()
    thread = threading.Thread(target=served.httpd.serve_forever, daemon=True)
    thread.start()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()
    thread.join(5)


def fast_session():
    return http_session(retries=1, backoff=0)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_download_writes_the_whole_file(server: Server, good_zip: Path, tmp_path: Path) -> None:
    body = good_zip.read_bytes()
    server.routes["/data.zip"] = partial(send_body, body=body)
    folder = tmp_path / "downloads"
    folder.mkdir()
    download(f"{server.url}/data.zip", folder / "data.zip", session=fast_session())
    assert (folder / "data.zip").read_bytes() == body
    assert [p.name for p in folder.iterdir()] == ["data.zip"], "no temporary file may be left"


def test_download_replaces_an_older_file_only_when_complete(server: Server, tmp_path: Path) -> None:
    server.routes["/new.zip"] = partial(send_body, body=b"new contents")
    destination = tmp_path / "data.zip"
    destination.write_bytes(b"old contents")
    download(f"{server.url}/new.zip", destination, session=fast_session())
    assert destination.read_bytes() == b"new contents"
    with pytest.raises(SfaeError):
        download(f"{server.url}/missing.zip", destination, session=fast_session())
    assert destination.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["data.zip"]


def test_download_retries_a_server_error(server: Server, tmp_path: Path) -> None:
    answers = iter([partial(http.server.BaseHTTPRequestHandler.send_error, code=503)])

    def flaky(handler: http.server.BaseHTTPRequestHandler) -> None:
        next(answers, partial(send_body, body=b"at last"))(handler)

    server.routes["/flaky.zip"] = flaky
    download(f"{server.url}/flaky.zip", tmp_path / "flaky.zip", session=fast_session())
    assert (tmp_path / "flaky.zip").read_bytes() == b"at last"
    assert server.hits == ["/flaky.zip", "/flaky.zip"]


@pytest.mark.parametrize("path", ["/missing.zip", "/always-503.zip"])
def test_download_of_a_failing_url_names_it_and_leaves_nothing(
    server: Server, tmp_path: Path, path: str
) -> None:
    server.routes["/always-503.zip"] = partial(
        http.server.BaseHTTPRequestHandler.send_error, code=503
    )
    url = f"{server.url}{path}"
    with pytest.raises(SfaeError) as caught:
        download(url, tmp_path / "data.zip", session=fast_session())
    assert url in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_download_of_an_unreachable_url_names_it_and_leaves_nothing(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/data.zip"
    with pytest.raises(SfaeError) as caught:
        download(url, tmp_path / "data.zip", session=fast_session())
    assert url in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_download_cut_short_is_incomplete(server: Server, tmp_path: Path) -> None:
    body = bytes(range(256)) * 64
    server.routes["/short.zip"] = partial(send_body, body=body[:5000], length=len(body))
    url = f"{server.url}/short.zip"
    with pytest.raises(SfaeError) as caught:
        download(url, tmp_path / "data.zip", session=fast_session())
    assert url in str(caught.value)
    assert "incomplete" in str(caught.value).lower()
    assert list(tmp_path.iterdir()) == []


def test_download_of_a_gzip_encoded_answer_is_complete(server: Server, tmp_path: Path) -> None:
    """Content-Length counts the encoded bytes; the file holds the decoded ones."""
    body = b"zip bytes " * 1000
    server.routes["/encoded.zip"] = partial(
        send_body, body=gzip.compress(body), Content_Encoding="gzip"
    )
    download(f"{server.url}/encoded.zip", tmp_path / "data.zip", session=fast_session())
    assert (tmp_path / "data.zip").read_bytes() == body


# ---------------------------------------------------------------- fetch: the mirror


def test_obtain_zip_takes_the_mirror_copy(tmp_path: Path, monkeypatch) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "x.zip").write_bytes(b"zip")
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    unreachable = f"http://127.0.0.1:{closed_port()}/x.zip"
    assert obtain_zip("x.zip", unreachable, tmp_path / "work") == mirror / "x.zip"


def test_obtain_zip_downloads_without_a_mirror(server: Server, tmp_path: Path, monkeypatch):
    server.routes["/x.zip"] = partial(send_body, body=b"downloaded")
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    path = obtain_zip("x.zip", f"{server.url}/x.zip", tmp_path)
    assert path == tmp_path / "x.zip" and path.read_bytes() == b"downloaded"


def test_obtain_zip_names_the_zip_missing_from_the_mirror(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path))
    with pytest.raises(SfaeError) as caught:
        obtain_zip("PennFudanPed.zip", "http://unused.invalid/", tmp_path / "work")
    assert str(tmp_path / "PennFudanPed.zip") in str(caught.value)
    assert MIRROR_ENV in str(caught.value)


def test_obtain_zip_refuses_a_mirror_that_is_no_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(SfaeError) as caught:
        obtain_zip("PennFudanPed.zip", "http://unused.invalid/", tmp_path)
    assert str(tmp_path / "nowhere") in str(caught.value)
    assert MIRROR_ENV in str(caught.value)


# ---------------------------------------------------------------- datasets.install

SMALL_PENNFUDAN = Dataset(
    name="pennfudan",
    zip_name="PennFudanPed.zip",
    url="http://127.0.0.1:9/PennFudanPed.zip",
    folder="PennFudanPed",
    verify=partial(verify_pennfudan, expected=3),
)
SMALL_MALL = Dataset(
    name="mall",
    zip_name="mall_dataset.zip",
    url="http://127.0.0.1:9/mall_dataset.zip",
    folder="mall_dataset",
    verify=partial(verify_mall, expected=3),
)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch) -> dict[str, Path]:
    """A mirror folder (SFAE_DATA_MIRROR points at it), a source tree, a project."""
    places = {name: tmp_path / name for name in ("mirror", "source", "project")}
    for place in places.values():
        place.mkdir()
    monkeypatch.setenv(MIRROR_ENV, str(places["mirror"]))
    return places


def publish(root: Path, places: dict[str, Path], zip_name: str) -> None:
    zip_tree(root, places["mirror"] / zip_name)


def assert_nothing_left(project: Path) -> None:
    """No destination, no hidden staging folder: data/ was not left behind."""
    leftovers = sorted(str(p.relative_to(project)) for p in project.rglob("*"))
    assert leftovers == []


def same_tree(left: Path, right: Path) -> bool:
    names = sorted(p.relative_to(left) for p in left.rglob("*") if p.is_file())
    if names != sorted(p.relative_to(right) for p in right.rglob("*") if p.is_file()):
        return False
    return all((left / n).read_bytes() == (right / n).read_bytes() for n in names)


def test_install_pennfudan_from_the_mirror(workspace: dict[str, Path]) -> None:
    root = write_pennfudan(workspace["source"])
    publish(root, workspace, "PennFudanPed.zip")
    destination = workspace["project"] / "data" / "raw" / "PennFudanPed"
    install(SMALL_PENNFUDAN, destination)
    assert same_tree(root, destination)
    assert list(destination.parent.iterdir()) == [destination], "no staging folder may remain"
    assert list(workspace["mirror"].iterdir()) == [workspace["mirror"] / "PennFudanPed.zip"]


def _drop_mask(root: Path) -> Path:
    mask = root / "PedMasks" / "FudanPed00002_mask.png"
    mask.unlink()
    return mask


def _misname_mask(root: Path) -> Path:
    mask = root / "PedMasks" / "FudanPed00002_mask.png"
    mask.rename(root / "PedMasks" / "FudanPed0002_mask.png")
    return mask


def _resize_mask(root: Path) -> Path:
    mask = root / "PedMasks" / "PennPed00001_mask.png"
    Image.fromarray(np.zeros((50, 49), np.uint8), mode="L").save(mask)
    return mask


def _skip_an_id(root: Path) -> Path:
    mask = root / "PedMasks" / "FudanPed00001_mask.png"
    values = np.zeros((30, 40), np.uint8)
    values[5:9, 5:9] = 2
    Image.fromarray(values, mode="L").save(mask)
    return mask


def _colour_mask(root: Path) -> Path:
    mask = root / "PedMasks" / "FudanPed00001_mask.png"
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(mask)
    return mask


def _truncate_mask(root: Path) -> Path:
    mask = root / "PedMasks" / "FudanPed00002_mask.png"
    data = mask.read_bytes()
    mask.write_bytes(data[: len(data) // 2])
    return mask


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_drop_mask, "missing mask"),
        (_misname_mask, "missing mask"),
        (_resize_mask, "49x50"),
        (_skip_an_id, "[0, 2]"),
        (_colour_mask, "single-channel"),
        (_truncate_mask, "cannot decode"),
    ],
)
def test_install_refuses_a_bad_mask_and_leaves_nothing(
    workspace: dict[str, Path], damage: Callable[[Path], Path], problem: str
) -> None:
    root = write_pennfudan(workspace["source"])
    bad = damage(root)
    publish(root, workspace, "PennFudanPed.zip")
    destination = workspace["project"] / "data" / "raw" / "PennFudanPed"
    with pytest.raises(SfaeError) as caught:
        install(SMALL_PENNFUDAN, destination)
    # The extracted copy is gone by now: the message names the zip and the member in it.
    message = str(caught.value)
    zip_path = workspace["mirror"] / "PennFudanPed.zip"
    assert message.startswith(f"{zip_path}: PennFudanPed/PedMasks/{bad.name}: "), message
    assert problem in message
    assert_nothing_left(workspace["project"])


def test_install_names_the_url_of_a_downloaded_zip_with_a_bad_member(
    workspace: dict[str, Path], server: Server, monkeypatch
) -> None:
    root = write_pennfudan(workspace["source"])
    bad = _skip_an_id(root)
    zip_tree(root, workspace["source"] / "served.zip")
    server.routes["/PennFudanPed.zip"] = partial(
        send_body, body=(workspace["source"] / "served.zip").read_bytes()
    )
    monkeypatch.delenv(MIRROR_ENV)
    served = dataclasses.replace(SMALL_PENNFUDAN, url=f"{server.url}/PennFudanPed.zip")
    with pytest.raises(SfaeError) as caught:
        install(served, workspace["project"] / "data" / "raw" / "PennFudanPed")
    assert str(caught.value).startswith(f"{served.url}: PennFudanPed/PedMasks/{bad.name}: ")
    assert_nothing_left(workspace["project"])


def test_install_refuses_a_wrong_image_count(workspace: dict[str, Path]) -> None:
    root = write_pennfudan(workspace["source"])
    publish(root, workspace, "PennFudanPed.zip")
    four = dataclasses.replace(SMALL_PENNFUDAN, verify=partial(verify_pennfudan, expected=4))
    with pytest.raises(SfaeError, match="expected 4 PNG images, found 3"):
        install(four, workspace["project"] / "data" / "raw" / "PennFudanPed")
    assert_nothing_left(workspace["project"])


def test_install_refuses_a_zip_without_the_top_folder(workspace: dict[str, Path]) -> None:
    root = write_pennfudan(workspace["source"])
    renamed = root.rename(root.parent / "Penn-Fudan")
    publish(renamed, workspace, "PennFudanPed.zip")
    with pytest.raises(SfaeError, match="no top-level folder PennFudanPed/") as caught:
        install(SMALL_PENNFUDAN, workspace["project"] / "data" / "raw" / "PennFudanPed")
    assert str(workspace["mirror"] / "PennFudanPed.zip") in str(caught.value)
    assert_nothing_left(workspace["project"])


def test_failed_install_keeps_the_previous_copy(workspace: dict[str, Path]) -> None:
    root = write_pennfudan(workspace["source"])
    publish(root, workspace, "PennFudanPed.zip")
    destination = workspace["project"] / "data" / "raw" / "PennFudanPed"
    install(SMALL_PENNFUDAN, destination)
    _skip_an_id(root)
    publish(root, workspace, "PennFudanPed.zip")
    with pytest.raises(SfaeError):
        install(SMALL_PENNFUDAN, destination)
    assert list(destination.parent.iterdir()) == [destination]
    np.testing.assert_array_equal(
        np.asarray(Image.open(destination / "PedMasks" / "FudanPed00001_mask.png")).max(), 1
    )


def test_install_refuses_a_corrupt_zip_and_leaves_nothing(workspace: dict[str, Path]) -> None:
    root = write_pennfudan(workspace["source"])
    publish(root, workspace, "PennFudanPed.zip")
    archive = workspace["mirror"] / "PennFudanPed.zip"
    archive.write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(SfaeError) as caught:
        install(SMALL_PENNFUDAN, workspace["project"] / "data" / "raw" / "PennFudanPed")
    assert str(archive) in str(caught.value)
    assert_nothing_left(workspace["project"])


def test_install_mall_from_the_mirror(workspace: dict[str, Path]) -> None:
    root = write_mall(workspace["source"])
    publish(root, workspace, "mall_dataset.zip")
    destination = workspace["project"] / "data" / "raw" / "mall_dataset"
    install(SMALL_MALL, destination)
    assert same_tree(root, destination)
    heads, counts = load_mall_annotations(destination)
    assert counts.tolist() == [2, 1, 3] and len(heads) == 3
    assert list(destination.parent.iterdir()) == [destination]


def test_install_mall_refuses_a_frame_of_the_wrong_size(workspace: dict[str, Path]) -> None:
    root = write_mall(workspace["source"])
    frame = root / "frames" / "seq_000002.jpg"
    Image.fromarray(np.zeros((240, 320, 3), np.uint8)).save(frame)
    publish(root, workspace, "mall_dataset.zip")
    with pytest.raises(SfaeError, match="320x240, expected 640x480") as caught:
        install(SMALL_MALL, workspace["project"] / "data" / "raw" / "mall_dataset")
    zip_path = workspace["mirror"] / "mall_dataset.zip"
    assert str(caught.value).startswith(f"{zip_path}: mall_dataset/frames/seq_000002.jpg: ")
    assert_nothing_left(workspace["project"])


@pytest.mark.parametrize(
    ("damage", "named", "problem"),
    [
        (lambda root: (root / "frames" / "seq_000003.jpg").unlink(), "seq_000003.jpg", "missing"),
        (lambda root: (root / "mall_gt.mat").unlink(), "mall_gt.mat", "not found"),
        (
            lambda root: (root / "mall_gt.mat").write_bytes(b"not a mat file"),
            "mall_gt.mat",
            "not a readable",
        ),
        (
            lambda root: scipy.io.savemat(
                root / "perspective_roi.mat",
                {"roi": {"mask": np.ones((48, 64), np.uint8)}, "pMapN": np.ones((48, 64))},
            ),
            "perspective_roi.mat",
            "must be (480, 640)",
        ),
    ],
)
def test_install_mall_refuses_damaged_files(
    workspace: dict[str, Path], damage: Callable[[Path], None], named: str, problem: str
) -> None:
    root = write_mall(workspace["source"])
    damage(root)
    publish(root, workspace, "mall_dataset.zip")
    with pytest.raises(SfaeError) as caught:
        install(SMALL_MALL, workspace["project"] / "data" / "raw" / "mall_dataset")
    member = str(caught.value).removeprefix(f"{workspace['mirror'] / 'mall_dataset.zip'}: ")
    assert (
        member.split(":")[0] == f"mall_dataset/{'frames/' if named.endswith('.jpg') else ''}{named}"
    )
    assert problem in str(caught.value)
    assert_nothing_left(workspace["project"])


def test_mall_counts_that_disagree_with_the_head_points_are_refused(tmp_path: Path) -> None:
    root = write_mall(tmp_path)
    gt = scipy.io.loadmat(root / "mall_gt.mat")
    gt["count"][1, 0] = 5
    scipy.io.savemat(root / "mall_gt.mat", {"count": gt["count"], "frame": gt["frame"]})
    with pytest.raises(SfaeError, match="frame 2 has") as caught:
        load_mall_annotations(root)
    assert str(root / "mall_gt.mat") in str(caught.value)


# ---------------------------------------------------------------- the stage


def run_download_stage(
    repo_root: Path, cwd: Path, dataset: str, mirror: Path
) -> subprocess.CompletedProcess:
    env = {**os.environ, MIRROR_ENV: str(mirror)}
    return subprocess.run(
        [sys.executable, str(repo_root / "stages" / "download.py"), dataset],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_error_line(result: subprocess.CompletedProcess, *named: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert not [line for line in lines if "error" in line.lower() and line not in errors], (
        "the message must start a line of its own"
    )
    for name in named:
        assert name in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("dataset", ["pennfudan", "mall"])
def test_download_stage_with_an_empty_mirror_fails_cleanly(
    repo_root: Path, tmp_path: Path, dataset: str
) -> None:
    mirror, project = tmp_path / "mirror", tmp_path / "project"
    mirror.mkdir()
    project.mkdir()
    result = run_download_stage(repo_root, project, dataset, mirror)
    zip_name = {"pennfudan": "PennFudanPed.zip", "mall": "mall_dataset.zip"}[dataset]
    assert_one_error_line(result, str(mirror / zip_name))
    assert list(project.iterdir()) == [], "no data/ may be left behind"


def test_download_stage_with_a_missing_mirror_folder_fails_cleanly(
    repo_root: Path, tmp_path: Path
) -> None:
    result = run_download_stage(repo_root, tmp_path, "pennfudan", tmp_path / "nowhere")
    assert_one_error_line(result, str(tmp_path / "nowhere"), MIRROR_ENV)
    assert list(tmp_path.iterdir()) == []


def test_download_stage_refuses_an_incomplete_dataset(repo_root: Path, tmp_path: Path) -> None:
    """A 3-image Penn-Fudan zip is not the 170-image dataset."""
    mirror, project = tmp_path / "mirror", tmp_path / "project"
    mirror.mkdir()
    project.mkdir()
    zip_tree(write_pennfudan(tmp_path / "source"), mirror / "PennFudanPed.zip")
    result = run_download_stage(repo_root, project, "pennfudan", mirror)
    assert_one_error_line(result, "PNGImages", "expected 170 PNG images, found 3")
    assert list(project.iterdir()) == []


def test_download_stage_refuses_a_bad_mask_midway(repo_root: Path, tmp_path: Path) -> None:
    """The error comes after the progress bar started: it must still be a line of its own."""
    mirror, project = tmp_path / "mirror", tmp_path / "project"
    mirror.mkdir()
    project.mkdir()
    root = write_pennfudan(tmp_path / "source")
    images, masks = root / "PNGImages", root / "PedMasks"
    template = np.asarray(Image.open(images / "PennPed00001.png"))
    template_mask = np.asarray(Image.open(masks / "PennPed00001_mask.png"))
    for number in range(2, 169):  # 170 pairs in all
        Image.fromarray(template).save(images / f"PennPed{number:05d}.png")
        Image.fromarray(template_mask, mode="L").save(masks / f"PennPed{number:05d}_mask.png")
    bad = _resize_mask(root)
    zip_tree(root, mirror / "PennFudanPed.zip")
    result = run_download_stage(repo_root, project, "pennfudan", mirror)
    assert_one_error_line(result, f"PedMasks/{bad.name}", "49x50")
    assert list(project.iterdir()) == []
