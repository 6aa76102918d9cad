"""OpenCV colour-map names, in a module small enough for the params loader to import."""

from __future__ import annotations

import cv2

COLORMAP_PREFIX = "COLORMAP_"


def colormap_names() -> list[str]:
    """The colour-map names this OpenCV build knows, lower case, sorted."""
    return sorted(
        name.removeprefix(COLORMAP_PREFIX).lower()
        for name in dir(cv2)
        if name.startswith(COLORMAP_PREFIX)
    )
