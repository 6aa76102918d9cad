"""`sfae predict`: segment your own images and videos with a trained model.

    sfae predict [--model models/model.keras] [--threshold 0.5] [--out predictions/] INPUT...

INPUT is an image (JPEG, PNG, BMP), a folder (its images, sorted by name) or a video (MP4,
AVI), in any mix. Each image gives `<stem>_mask.png` (0/255, at the image's own size) and
`<stem>_overlay.png`; each video gives `<stem>_overlay.mp4` at its own frame rate and size.
A bad input is one line `error: <path>: <problem>` on stderr; the others are still written,
and the exit status is 1 when any input failed. Every output appears whole or not at all.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sfae.errors import SfaeError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi")
KINDS = {**dict.fromkeys(IMAGE_SUFFIXES, "image"), **dict.fromkeys(VIDEO_SUFFIXES, "video")}
# The values of params.yaml (evaluate.threshold, render.alpha, render.colormap), fixed here so
# that the command runs anywhere, without params.yaml; tests/test_predict.py checks they agree.
DEFAULT_THRESHOLD = 0.5
DEFAULT_ALPHA = 0.45
DEFAULT_COLORMAP = "jet"
DEFAULT_BATCH = 64
FALLBACK_FPS = 25.0  # for a video that does not say its frame rate


@dataclass(frozen=True)
class Job:
    """One input file and what it is ("image" or "video")."""

    path: Path
    kind: str

    def outputs(self, out: Path) -> tuple[Path, ...]:
        names = ("overlay.mp4",) if self.kind == "video" else ("mask.png", "overlay.png")
        return tuple(out / f"{self.path.stem}_{name}" for name in names)


class Report:
    """Counts the inputs written and failed; prints each failure as one `error:` line on stderr."""

    def __init__(self) -> None:
        self.written = self.failed = 0

    def error(self, message: str) -> None:
        self.failed += 1
        print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def failure_of(self, path: Path) -> Iterator[None]:
        """What the body raises is reported as a failure of path, and the command goes on."""
        try:
            yield
        except SfaeError as error:  # it names its file already
            self.error(str(error))
        except Exception as error:
            detail = " ".join(str(error).split())[:200]
            self.error(
                f"{path}: {type(error).__name__}: {detail}" if detail else f"{path}: {error!r}"
            )

    def wrote(self, path: Path, outputs: tuple[Path, ...]) -> None:
        self.written += 1
        print(f"{path} -> {', '.join(str(p) for p in outputs)}")


def expand_inputs(inputs: Sequence[str | Path], out: Path, report: Report) -> list[Job]:
    """The image and video files to process, in order; the bad inputs go to report.

    A folder stands for its images (not its subfolders), sorted by name. Two inputs whose
    outputs would have the same names: the second is refused rather than overwrite the first.
    """
    supported = ", ".join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)
    jobs: list[Job] = []
    owners: dict[Path, Path] = {}
    seen: set[Path] = set()
    for given in map(Path, inputs):
        if given.is_dir():
            # Sorted by name: paths of one folder compare by their last part.
            images = sorted(
                p for p in given.iterdir() if p.is_file() and KINDS.get(p.suffix.lower()) == "image"
            )
            if not images:
                report.error(f"{given}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            candidates = [Job(p, "image") for p in images]
        elif not given.exists():
            report.error(f"{given}: not found")
            continue
        elif given.suffix.lower() not in KINDS:
            report.error(f"{given}: not a supported image or video (expected {supported})")
            continue
        else:
            candidates = [Job(given, KINDS[given.suffix.lower()])]
        for job in candidates:
            resolved = job.path.resolve()
            if resolved in seen:
                continue  # the same file twice (e.g. alone and in its folder): once is enough
            clash = next((owners[o] for o in job.outputs(out) if o in owners), None)
            if clash is not None:
                report.error(
                    f"{job.path}: its outputs would overwrite those of {clash} (same name "
                    f"{job.path.stem}); rename one or run it with another --out"
                )
                continue
            seen.add(resolved)
            owners.update(dict.fromkeys(job.outputs(out), job.path))
            jobs.append(job)
    return jobs


def check_output_folder(out: Path) -> None:
    """Create out if needed and prove a file can be made in it; else an SfaeError."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as error:
        if isinstance(error, FileExistsError):
            problem = ": it is a file, not a folder"
        elif isinstance(error, NotADirectoryError):
            problem = ": a parent is not a folder"
        else:
            problem = f" ({error.strerror or type(error).__name__})"
        raise SfaeError(f"{out}: cannot write the outputs here{problem}") from error


def segment_images(
    jobs: list[Job], segmenter, out: Path, threshold: float, draw: Callable, report: Report
) -> None:
    """Masks and overlays of image files, `batch_size` images through the network at a time."""
    from sfae.atomic import staged_outputs
    from sfae.data.image_io import read_rgb, write_png
    from sfae.inference.predict import to_mask

    for start in range(0, len(jobs), segmenter.batch_size):
        readable = []
        for job in jobs[start : start + segmenter.batch_size]:
            with report.failure_of(job.path):
                readable.append((job, read_rgb(job.path)))
        if not readable:
            continue
        probabilities = segmenter.probabilities([rgb for _, rgb in readable])
        for (job, rgb), probability in zip(readable, probabilities, strict=True):
            with report.failure_of(job.path):
                with staged_outputs(*job.outputs(out)) as (mask_path, overlay_path):
                    write_png(mask_path, to_mask(probability, threshold))
                    write_png(overlay_path, draw(rgb, probability))
                report.wrote(job.path, job.outputs(out))


def _read_frames(capture, count: int) -> list:
    """Up to count frames: those decoded before the first that is not."""
    reads = (capture.read() for _ in range(count))  # (ok, frame) pairs, read one by one
    return [frame for _, frame in itertools.takewhile(lambda read: read[0], reads)]


def segment_video(source: Path, target: Path, segmenter, draw: Callable) -> None:
    """The probability overlaid on every frame of a video, as an MP4 at its rate and size.

    Three stages overlap (OpenCV and TensorFlow release the GIL): a thread decodes the next
    batch of frames while the network works on this one, and another thread overlays and
    encodes the last one.
    """
    import cv2
    from tqdm import tqdm

    from sfae.atomic import staged_outputs
    from sfae.inference.render import check_video, open_mp4_writer

    capture = cv2.VideoCapture(str(source))
    try:
        if not capture.isOpened():
            raise SfaeError(
                f"{source}: cannot open it as a video (unreadable, truncated or damaged)"
            )
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if fps > 0 else FALLBACK_FPS  # NaN too
        expected = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        decoded = 0
        with (
            staged_outputs(target) as (temporary,),
            ThreadPoolExecutor(1) as reader,
            ThreadPoolExecutor(1) as encoder,
            tqdm(total=max(expected, 0) or None, desc=source.name, unit="frame") as progress,
        ):
            writer = None
            pending_read: Future = reader.submit(_read_frames, capture, segmenter.batch_size)
            pending_write: Future = encoder.submit(int)  # a finished no-op, to wait on
            try:
                while frames := pending_read.result():
                    pending_read = reader.submit(_read_frames, capture, segmenter.batch_size)
                    if writer is None:
                        size = (frames[0].shape[1], frames[0].shape[0])
                        writer = open_mp4_writer(temporary, fps, *size, shown=target)
                    # Decoders and writers work in BGR: so do the network's input and the
                    # overlay, which saves two colour conversions of every full-size frame.
                    probabilities = segmenter.probabilities(frames, bgr=True)
                    pending_write.result()
                    pending_write = encoder.submit(
                        _draw_and_write, writer, draw, frames, probabilities
                    )
                    decoded += len(frames)
                    progress.update(len(frames))
                pending_write.result()
            finally:
                pending_read.cancel()
                if writer is not None:
                    encoder.submit(writer.release).result()
            if decoded == 0:
                raise SfaeError(
                    f"{source}: no frame could be decoded (empty, truncated or damaged)"
                )
            if expected > 0 and decoded < expected:
                raise SfaeError(
                    f"{source}: truncated or damaged: decoded {decoded} of its {expected} frames"
                )
            check_video(temporary, decoded)
    finally:
        capture.release()


def _draw_and_write(writer, draw: Callable, frames: list, probabilities: list) -> None:
    for frame, probability in zip(frames, probabilities, strict=True):
        writer.write(draw(frame, probability, bgr=True))


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def predict_command(args: argparse.Namespace) -> int:
    import sfae.startup  # noqa: F401  (TensorFlow loads quietly)
    from sfae.inference.predict import Segmenter
    from sfae.inference.render import colormap_code, overlay

    report = Report()
    try:
        code = colormap_code(args.colormap)
    except SfaeError as error:
        report.error(f"--colormap: {error}")
        return 1
    jobs = expand_inputs(args.inputs, args.out, report)
    if not jobs:
        return 1
    try:
        segmenter = Segmenter.load(args.model, batch_size=args.batch_size)
        check_output_folder(args.out)
    except SfaeError as error:
        report.error(str(error))
        return 1

    def draw(frame, probability, bgr=False):
        return overlay(frame, probability, args.alpha, code, bgr=bgr)

    for kind, run in itertools.groupby(jobs, key=lambda job: job.kind):
        if kind == "image":  # consecutive images share batches
            segment_images(list(run), segmenter, args.out, args.threshold, draw, report)
            continue
        for job in run:
            with report.failure_of(job.path):
                segment_video(job.path, *job.outputs(args.out), segmenter, draw)
                report.wrote(job.path, job.outputs(args.out))
    if report.failed:
        print(f"{report.written} inputs written to {args.out}, {report.failed} failed")
    return 1 if report.failed else 0
