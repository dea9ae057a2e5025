"""Finding the face in every frame, offline: OpenCV's Haar cascade (``haarcascade_frontalface_default.xml``, which
the opencv-python-headless 4.x wheel ships in ``cv2.data``), the largest face of each frame, padded as Wav2Lip pads
(10 px below the chin: ``--pads 0 10 0 0``), the boxes smoothed over 5 frames (Wav2Lip's ``get_smoothened_boxes``).
A frame without a face is not an error: it takes the box of the nearest frame with one, and the frames are counted
and reported; a video with no face at all is one SlimError.  A fixed box (``box``) skips detection, as Wav2Lip's
``--box``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from slimgui.core.errors import SlimError

PADS = (0, 10, 0, 0)  # top, bottom, left, right (Wav2Lip's default)
SMOOTH = 5
CASCADE = "haarcascade_frontalface_default.xml"


@dataclass
class FaceTrack:
    """(y1, y2, x1, x2) per frame (Wav2Lip's order), and the frames where no face was found."""

    boxes: list[tuple[int, int, int, int]]
    missing: list[int] = field(default_factory=list)
    detector: str = "haar"


@functools.cache
def _cascade():
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        raise SlimError(f"this OpenCV ({cv2.__version__}) has no Haar cascades (OpenCV 5 moved them out)",
                        hint="pip install 'opencv-python-headless>=4.8,<5', or give the face's place with --box "
                             "X,Y,W,H")
    path = getattr(getattr(cv2, "data", None), "haarcascades", "") + CASCADE
    clf = cv2.CascadeClassifier(path)
    if clf.empty():
        raise SlimError(f"OpenCV's face cascade {CASCADE} is missing from its wheel",
                        hint="reinstall opencv-python-headless, or give the face's place with --box X,Y,W,H")
    return clf


def detector_available() -> bool:
    try:
        _cascade()
        return True
    except SlimError:
        return False


def detect(frame: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the largest face in a BGR frame, or None."""
    import cv2

    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    grey = cv2.equalizeHist(grey)
    side = min(grey.shape[:2])
    found = _cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=4, minSize=(max(24, side // 8),) * 2)
    if len(found) == 0:
        return None
    x, y, w, h = max((tuple(int(v) for v in f) for f in found), key=lambda f: f[2] * f[3])
    return x, y, w, h


def parse_box(text: str | None, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """``X,Y,W,H`` (pixels) → (y1, y2, x1, x2) clipped to the frame; "full" → the whole frame; None → None."""
    if text is None or not str(text).strip():
        return None
    h, w = shape[:2]
    if str(text).strip().lower() == "full":
        return 0, h, 0, w
    try:
        x, y, bw, bh = (int(float(v)) for v in str(text).split(","))
    except ValueError:
        raise SlimError(f"--box {text!r} is not X,Y,W,H", hint="give the face's box in pixels, e.g. --box 40,30,96,96, "
                        "or --box full") from None
    if bw < 8 or bh < 8 or x < 0 or y < 0 or x + bw > w or y + bh > h:
        raise SlimError(f"--box {text} is not inside the {w}×{h} frame (or smaller than 8 pixels)",
                        hint="give X,Y,W,H inside the frame")
    return y, y + bh, x, x + bw


def track(frames: np.ndarray, box: str | None = None) -> FaceTrack:
    """The face box of every frame (module docstring)."""
    n = len(frames)
    fixed = parse_box(box, frames[0].shape)
    if fixed is not None:
        return FaceTrack([fixed] * n, [], "fixed box")
    h, w = frames[0].shape[:2]
    raw: list[tuple[int, int, int, int] | None] = []
    for f in frames:
        d = detect(f)
        if d is None:
            raw.append(None)
            continue
        x, y, bw, bh = d
        raw.append((max(0, y - PADS[0]), min(h, y + bh + PADS[1]), max(0, x - PADS[2]), min(w, x + bw + PADS[3])))
    found = [i for i, b in enumerate(raw) if b is not None]
    if not found:
        raise SlimError(f"no face found in any of the {n} frames", hint="give a video or image of a frontal face, or "
                        "the face's place with --box X,Y,W,H")
    missing = [i for i, b in enumerate(raw) if b is None]
    filled = []
    for i, b in enumerate(raw):
        if b is None:
            j = min(found, key=lambda k: abs(k - i))
            b = raw[j]
        filled.append(b)
    arr = np.array(filled, dtype=np.float64)
    smooth = []
    for i in range(n):  # Wav2Lip: the mean of the boxes i … i+4 (the last window for the last frames)
        win = arr[len(arr) - SMOOTH:] if i + SMOOTH > len(arr) else arr[i:i + SMOOTH]
        smooth.append(tuple(int(v) for v in win.mean(0)))
    return FaceTrack(smooth, missing, "haar")


def crop(frame: np.ndarray, box: tuple[int, int, int, int], size: int = 96) -> np.ndarray:
    import cv2

    y1, y2, x1, x2 = box
    return cv2.resize(frame[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_AREA)


def paste(frame: np.ndarray, face: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The frame with the generated face resized back into its box (Wav2Lip's inference)."""
    import cv2

    y1, y2, x1, x2 = box
    out = frame.copy()
    out[y1:y2, x1:x2] = cv2.resize(face, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
    return out
