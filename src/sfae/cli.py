"""The `sfae` command: `predict` your own files, run the `study` or a `sweep` (DVC experiments,
recorded as they finish, resumed where they stopped), rebuild the `reports` from the records."""

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sfae.config import ARCHS
from sfae.errors import SfaeError
from sfae.inference import files


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="sfae", description="The `sfae` command.")
    commands = top.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict",
        help="segment images, folders of images and videos",
        description="Segment people in images (JPEG, PNG, BMP), folders of images and videos "
        "(MP4, AVI) with a trained sfae model.",
    )
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="image, folder or video")
    for flag, kind, default, what in (
        ("--model", Path, Path("models/model.keras"), "a saved .keras model"),
        ("--threshold", files.fraction, files.DEFAULT_THRESHOLD, "foreground where the "
         "probability is at least this"),
        ("--out", Path, Path("predictions"), "output folder"),
        ("--alpha", files.fraction, files.DEFAULT_ALPHA, "overlay opacity where the "
         "probability is 1"),
        ("--colormap", str, files.DEFAULT_COLORMAP, "OpenCV colour map of the overlay"),
        ("--batch-size", files.positive, files.DEFAULT_BATCH, "images or frames through the "
         "network at a time"),
    ):  # fmt: skip
        predict.add_argument(flag, type=kind, default=default, help=f"{what} (default %(default)s)")
    study = commands.add_parser("study", help="the post's five variants x the study seeds")
    sweep = commands.add_parser("sweep", help="each regulariser's strength, selected, compared")
    shares = "run only the K-th of N deterministic shares of the runs (for N machines)"
    remote = "pull experiments from this git remote (and its DVC remote) first, push ours after"
    for command in (study, sweep):
        add = command.add_argument
        add("--jobs", type=files.positive, default=1, help="experiments run at once (default 1)")
        add("--report-only", action="store_true", help="rebuild the report only")
        add("--share", default="1/1", metavar="K/N", help=shares)
        add("--remote", metavar="GIT_REMOTE", help=remote)
    own = "the network's own sweep: sweep (paper, the default), sweep.unet"
    which = sweep.add_mutually_exclusive_group().add_argument
    which("--arch", choices=ARCHS, help=own)
    which("--name", help="a named sweep of params.yaml's `sweep` (unet, unet_stacked, ...)")
    commands.add_parser("reports", help="rebuild every report from reports/runs.jsonl")
    return top


def _campaign():
    """This project's paths, its config with the plans, and params.yaml."""
    from sfae.config import read_yaml
    from sfae.nn.regularisers.registry import REGULARISERS
    from sfae.paths import ProjectPaths
    from sfae.plans import load_plans

    paths = ProjectPaths.here()
    return paths, load_plans(paths.params, REGULARISERS), read_yaml(paths.params.read_text())


def study_command(args: argparse.Namespace) -> list[Path]:
    from sfae.experiments.campaign import collect
    from sfae.experiments.sweep import study_plan
    from sfae.machine import local_machine_kind
    from sfae.reports.build import write_study_report

    paths, config, params = _campaign()
    if args.remote or not args.report_only:
        specs, kind = study_plan(config), local_machine_kind()
        collect(args, specs, params, paths.run_records, paths.root, "study", kind=kind)
    if args.share != "1/1" and not args.report_only:
        # Other machines' shares hold the rest: the report waits for `--report-only --remote`.
        print("study: this machine's share is done; `sfae study --report-only --remote` reports")
        return []
    return write_study_report(paths)


def sweep_command(args: argparse.Namespace) -> list[Path]:
    from sfae.experiments.campaign import run_sweep
    from sfae.experiments.sweep import MAIN, Sweep
    from sfae.machine import local_machine_kind
    from sfae.reports.build import write_all_sweep_reports

    paths, config, params = _campaign()
    name = args.name or args.arch or MAIN
    Sweep(config, params, name)  # a sweep params.yaml lacks stops here, naming the ones it has
    if args.remote or not args.report_only:
        # Runs of other machine kinds round otherwise: this machine runs the sweep's own.
        sweep = Sweep(config, params, name, kind=local_machine_kind())
        print(f"sweep: runs on this machine's kind ({sweep.kind}) count, others do not")
        run_sweep(sweep, args, paths.run_records, paths.root)
    return write_all_sweep_reports(paths)


def reports_command(args: argparse.Namespace) -> list[Path]:
    from sfae.paths import ProjectPaths
    from sfae.reports.build import write_all_reports

    return write_all_reports(ProjectPaths.here())


def main(argv: Sequence[str] | None = None) -> int:
    """The console script `sfae`; returns the exit status."""
    # Quieter native libraries, set before they load: FFmpeg would print its own lines
    # about a damaged video beside ours (TensorFlow's start-up: sfae.startup).
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    args = parser().parse_args(argv)
    if args.command == "predict":
        return files.predict_command(args)
    commands = {"study": study_command, "sweep": sweep_command, "reports": reports_command}
    try:
        written = commands[args.command](args)
    except SfaeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
