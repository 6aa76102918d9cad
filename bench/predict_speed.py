"""Frames per second of `sfae predict` on the 2000 CUHK Mall frames (640x480) as one video.

    python bench/predict_speed.py [--model models/model.keras] [--frames 2000]

Builds an MP4 (mp4v, as render.py writes) of data/raw/mall_dataset/frames/*.jpg once into a
temporary folder, then times the command end to end in its own process: start-up, model
loading, decoding, the network, the overlay and encoding of `<stem>_overlay.mp4`. Its CPU
seconds (user + system) are printed too: unlike the wall time, they hardly depend on what
else the machine is running.
Goal: the whole clip in at most 30 s on a 2-core machine. The last two lines are
`fps: X` and `seconds: Y`.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
FRAMES = ROOT / "data" / "raw" / "mall_dataset" / "frames"
FPS = 10.0


def build_video(frames: list[Path], path: Path) -> None:
    first = cv2.imread(str(frames[0]))
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (width, height))
    if not writer.isOpened():
        sys.exit(f"error: {path}: cannot open an MP4 writer")
    try:
        for frame_path in frames:
            frame = cv2.imread(str(frame_path))
            if frame is None:
                sys.exit(f"error: {frame_path}: cannot decode")
            writer.write(frame)
    finally:
        writer.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "model.keras")
    parser.add_argument("--frames", type=int, default=2000, help="first N Mall frames")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    frames = sorted(FRAMES.glob("*.jpg"))[: args.frames]
    if not frames:
        sys.exit(f"error: {FRAMES}: no frames; run `dvc repro download_mall`")
    if not args.model.is_file():
        sys.exit(f"error: {args.model}: not found; run `dvc repro`")
    with tempfile.TemporaryDirectory() as folder:
        video = Path(folder) / "mall.mp4"
        started = time.perf_counter()
        build_video(frames, video)
        print(f"built {video.name}: {len(frames)} frames in {time.perf_counter() - started:.1f} s")
        command = [
            sys.executable,
            "-m",
            "sfae.cli",
            "predict",
            "--model",
            str(args.model),
            "--batch-size",
            str(args.batch_size),
            "--out",
            str(Path(folder) / "out"),
            str(video),
        ]
        environment = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        started = time.perf_counter()
        result = subprocess.run(command, env=environment, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command's own CPU time
        if result.returncode != 0:
            sys.exit(f"`sfae predict` failed:\n{result.stdout}\n{result.stderr}")
        written = cv2.VideoCapture(str(Path(folder) / "out" / "mall_overlay.mp4"))
        count = int(written.get(cv2.CAP_PROP_FRAME_COUNT))
        written.release()
        if count != len(frames):
            sys.exit(f"error: the overlay video has {count} frames, not {len(frames)}")
    load = os.getloadavg()[0]
    print(f"{len(frames)} frames, {os.cpu_count()} cores, load average {load:.1f} at the end")
    print(f"cpu seconds: {usage.ru_utime + usage.ru_stime:.1f} (user + system of the command)")
    print(f"fps: {len(frames) / seconds:.1f}")
    print(f"seconds: {seconds:.1f}")


if __name__ == "__main__":
    main()
