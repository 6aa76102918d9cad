"""`sfae predict INPUT...`: masks and overlays of images, folders of images and videos; a bad
input is one line `error: <path>: <problem>` on stderr, and the others are still written."""

import argparse
import contextlib
import functools
import itertools
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sfae.errors import SfaeError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi")
# params.yaml's values, fixed so that the command runs without it (tests/test_predict.py checks)
DEFAULT_THRESHOLD = 0.5
DEFAULT_ALPHA = 0.45
DEFAULT_COLORMAP = "jet"
DEFAULT_BATCH = 64


def outputs(path: Path, out: Path) -> tuple[Path, ...]:
    video = path.suffix.lower() in VIDEO_SUFFIXES
    names = ("overlay.mp4",) if video else ("mask.png", "overlay.png")
    return tuple(out / f"{path.stem}_{name}" for name in names)


class Report:
    """Counts the inputs written and failed; prints each failure as one `error:` line."""

    written = failed = 0

    def error(self, message: str) -> None:
        self.failed += 1
        print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def failure_of(self, path: Path, written: tuple[Path, ...] = ()):
        """What the body raises is a failure of path, and the command goes on; else `written`."""
        try:
            yield
        except Exception as error:  # an SfaeError names its file already
            detail = " ".join(str(error).split())[:200]
            why = f"{type(error).__name__}: {detail}" if detail else repr(error)
            return self.error(error if isinstance(error, SfaeError) else f"{path}: {why}")
        if written:
            self.written += 1
            print(f"{path} -> {', '.join(map(str, written))}")


def expand_inputs(inputs: list[str], out: Path, report: Report) -> list[Path]:
    """The files to process, in order (a folder: its images by name); outputs never clash."""
    supported = ", ".join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)
    jobs, owners, seen = [], {}, set()
    for given in map(Path, inputs):
        if given.is_dir():
            files = (p for p in given.iterdir() if p.is_file())
            candidates = sorted(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
            if not candidates:
                report.error(f"{given}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        elif not given.exists():
            report.error(f"{given}: not found")
            continue
        elif given.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
            report.error(f"{given}: not a supported image or video (expected {supported})")
            continue
        else:
            candidates = [given]
        for path in candidates:
            if path.resolve() in seen:
                continue  # the same file twice (e.g. alone and in its folder): once is enough
            clash = next((owners[o] for o in outputs(path, out) if o in owners), None)
            if clash is not None:
                report.error(
                    f"{path}: its outputs would overwrite those of {clash} (same name "
                    f"{path.stem}); rename one or run it with another --out"
                )
                continue
            seen.add(path.resolve())
            owners.update(dict.fromkeys(outputs(path, out), path))
            jobs.append(path)
    return jobs


def check_output_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as error:
        problem = {
            FileExistsError: ": it is a file, not a folder",
            NotADirectoryError: ": a parent is not a folder",
        }.get(type(error), f" ({error.strerror or type(error).__name__})")
        raise SfaeError(f"{out}: cannot write the outputs here{problem}") from error


def segment_images(paths: list[Path], segmenter, out: Path, threshold: float, draw, report):
    from sfae.atomic import staged_outputs
    from sfae.data.image_io import read_rgb, write_png
    from sfae.inference.predict import to_mask

    for start in range(0, len(paths), segmenter.batch_size):
        readable = []
        for path in paths[start : start + segmenter.batch_size]:
            with report.failure_of(path):
                readable.append((path, read_rgb(path)))
        probabilities = segmenter.probabilities([rgb for _, rgb in readable])
        for (path, rgb), probability in zip(readable, probabilities, strict=True):
            files = outputs(path, out)
            with report.failure_of(path, files), staged_outputs(*files) as (mask, overlaid):
                write_png(mask, to_mask(probability, threshold))
                write_png(overlaid, draw(rgb, probability))


def segment_video(source: Path, target: Path, segmenter, draw) -> None:
    """An MP4 of the overlaid frames; the next batch is decoded and the last one drawn and
    encoded while the network works."""
    import cv2
    from tqdm import tqdm

    from sfae.atomic import staged_outputs
    from sfae.inference.render import check_video, open_mp4_writer

    def read_frames() -> list:  # up to a batch: those decoded before the first that is not
        reads = (capture.read() for _ in range(segmenter.batch_size))
        return [frame for _, frame in itertools.takewhile(lambda read: read[0], reads)]

    def draw_and_write(frames: list, probabilities: list) -> None:
        for frame, probability in zip(frames, probabilities, strict=True):
            writer.write(draw(frame, probability, bgr=True))

    capture, writer, decoded = cv2.VideoCapture(str(source)), None, 0
    if not capture.isOpened():  # nothing to release
        raise SfaeError(f"{source}: cannot open it as a video (unreadable, truncated or damaged)")
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if fps > 0 else 25.0  # a video that does not say its rate (NaN too)
        expected = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        with (
            staged_outputs(target) as (temporary,),
            ThreadPoolExecutor(2) as pool,  # a read and a write pending at most, each in order
            tqdm(total=max(expected, 0) or None, desc=source.name, unit="frame") as progress,
        ):
            read, written = pool.submit(read_frames), pool.submit(int)  # int: a no-op
            while frames := read.result():
                read = pool.submit(read_frames)
                if writer is None:
                    size = frames[0].shape[1], frames[0].shape[0]
                    writer = open_mp4_writer(temporary, fps, *size, shown=target)
                # In BGR, as decoders and writers: two colour conversions of a frame saved.
                probabilities = segmenter.probabilities(frames, bgr=True)
                written.result()
                written = pool.submit(draw_and_write, frames, probabilities)
                decoded += len(frames)
                progress.update(len(frames))
            written.result()
            if decoded == 0:
                raise SfaeError(
                    f"{source}: no frame could be decoded (empty, truncated or damaged)"
                )
            writer.release()
            if expected > 0 and decoded < expected:
                raise SfaeError(
                    f"{source}: truncated or damaged: decoded {decoded} of its {expected} frames"
                )
            check_video(temporary, decoded)
    finally:  # the pool has shut down: no thread uses the capture or the writer
        capture.release()
        if writer is not None:
            writer.release()  # after a failure; a no-op after success


def fraction(text: str) -> float:
    if not 0.0 <= (value := float(text)) <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def positive(text: str) -> int:
    if (value := int(text)) < 1:
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
    if not (jobs := expand_inputs(args.inputs, args.out, report)):
        return 1
    try:
        segmenter = Segmenter.load(args.model, batch_size=args.batch_size)
        check_output_folder(args.out)
    except SfaeError as error:
        report.error(str(error))
        return 1
    draw = functools.partial(overlay, alpha=args.alpha, colormap=code)
    for video, run in itertools.groupby(jobs, key=lambda p: p.suffix.lower() in VIDEO_SUFFIXES):
        if not video:  # consecutive images share batches
            segment_images(list(run), segmenter, args.out, args.threshold, draw, report)
            continue
        for path in run:
            with report.failure_of(path, outputs(path, args.out)):
                segment_video(path, *outputs(path, args.out), segmenter, draw)
    if report.failed:
        print(f"{report.written} inputs written to {args.out}, {report.failed} failed")
    return 1 if report.failed else 0
