"""One exception type for every user-facing failure, and the wrapper stages run under."""

import gc
import sys
from collections.abc import Callable


class SfaeError(Exception):
    """A failure the user can fix: the message names the file and what is wrong."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main; turn an SfaeError into one clear line and exit status 1."""
    try:
        main()
    except SfaeError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    # Spares the exit's last garbage collection of every TensorFlow object (about 1 s a stage).
    gc.freeze()
