"""Face meshes: MediaPipe FaceMesh landmarks per frame, head pose removal, the neutral mesh.

Contracts (this module owns them):
- per chunk, ``landmarks`` float32 (frames, 468, 3) in MediaPipe's normalised
  coordinates (x / width, y / height, z on the x scale) and ``face_found`` bool
  (frames,); a frame without a face is kept, NaN, and marked;
- geometry for learning (the neutral mesh, pose-free meshes) is *isotropic*:
  every axis divided by the image width, so that rotations are rotations;
- ``pose`` float32 (frames, 4, 4): the similarity that maps a frame's isotropic
  mesh onto the neutral mesh (``aligned = pose @ [x, y, z, 1]``); its inverse
  puts the head motion back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

N_LANDMARKS = 468
# Landmarks that speech does not move: forehead, temples and the sides of the face at
# cheekbone height, nose bridge and tip, eye corners. No lips, jaw, cheeks or brows.
STABLE = [10, 338, 297, 332, 284, 251, 389, 356, 454, 109, 67, 103, 54, 21, 162, 127, 234, 151, 9, 8,
          168, 6, 197, 195, 5, 4, 33, 133, 362, 263]
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
EYE_OUTER = (33, 263)


TRACKERS = ("facemesh", "landmarker")


@dataclass(frozen=True)
class TrackParams:
    max_side: int  # frames are scaled in the decoder so the longer side is at most this
    max_faces: int  # faces FaceMesh looks for; the same person is followed among them (the landmarker: one)
    min_detection_confidence: float
    min_tracking_confidence: float
    decode_threads: int  # ffmpeg decoder threads
    tracker: str = "facemesh"  # mesh.tracker: facemesh (landmarks) | landmarker (and blendshapes, transform)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TrackParams:
        return cls(**config["mesh"]["tracking"], tracker=config["mesh"]["tracker"])


@dataclass(frozen=True)
class NeutralParams:
    max_missing_share: float  # a recording with more frames than this without a face is refused
    silence_quantile: float  # neutral from the recording: frames quieter than this quantile of energy

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> NeutralParams:
        return cls(**config["mesh"]["neutral"])


def decode_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The (even) frame size the decoder scales to, keeping the aspect ratio."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


class FaceTracker:
    """MediaPipe FaceMesh in tracking mode that follows one person through a stream (``mesh.tracker:
    facemesh``; :class:`animote.landmarker.Landmarker` is the other).

    The person is the largest face when one is first seen, then in every frame the
    face closest to where that person was last. When the first frame with a face
    shows only one (the usual talking-head recording), MediaPipe tracks just that
    face: with room for more faces it would run its face detector on every frame
    looking for them, which costs half again as much as the landmarks themselves.
    """

    extra_shapes: dict[str, tuple[int, ...]] = {}  # per-frame arrays beside the landmarks: none

    def __init__(self, params: TrackParams, name: str = ""):
        self.name = name
        self.params = params
        self._mesh = None
        self._last: np.ndarray | None = None  # centre (x, y) of the followed face
        self.faces_at_start = 0

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self, frame: np.ndarray, index: int) -> bool:
        import mediapipe as mp

        with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=self.params.max_faces,
                                             min_detection_confidence=self.params.min_detection_confidence) as fm:
            res = fm.process(frame)
        if not res.multi_face_landmarks:
            return False
        self.faces_at_start = len(res.multi_face_landmarks)
        if self.faces_at_start > 1:
            log.info("%s frame %d: %d faces; following the largest, then the closest to it", self.name, index,
                     self.faces_at_start)
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1 if self.faces_at_start == 1 else self.params.max_faces,
            refine_landmarks=False, min_detection_confidence=self.params.min_detection_confidence,
            min_tracking_confidence=self.params.min_tracking_confidence)
        return True

    def process(self, frame: np.ndarray, index: int = 0) -> np.ndarray | None:
        """Landmarks (468, 3) of the followed face in an RGB frame, or None."""
        if self._mesh is None and not self._start(frame, index):
            return None
        res = self._mesh.process(frame)
        if not res.multi_face_landmarks:
            return None
        faces = [np.array([(p.x, p.y, p.z) for p in f.landmark], dtype=np.float32)
                 for f in res.multi_face_landmarks]
        if len(faces) == 1:
            pick = 0
        elif self._last is None:
            areas = [np.ptp(f[:, 0]) * np.ptp(f[:, 1]) for f in faces]
            pick = int(np.argmax(areas))
            log.info("%s frame %d: following the face centred at (%.2f, %.2f)", self.name, index,
                     *faces[pick][:, :2].mean(axis=0))
        else:
            dist = [np.linalg.norm(f[:, :2].mean(axis=0) - self._last) for f in faces]
            pick = int(np.argmin(dist))
        self._last = faces[pick][:, :2].mean(axis=0)
        return faces[pick]


def make_tracker(params: TrackParams, name: str = ""):
    """The tracker ``params.tracker`` names, for one stream."""
    if params.tracker == "landmarker":
        from .landmarker import Landmarker

        return Landmarker(params.min_detection_confidence, params.min_tracking_confidence)
    if params.tracker != "facemesh":
        raise ValueError(f"mesh.tracker {params.tracker!r}: use one of {', '.join(TRACKERS)}")
    return FaceTracker(params, name)


def track_frames(frames: Iterable[np.ndarray], n_frames: int, params: TrackParams,
                 name: str = "") -> tuple[np.ndarray, np.ndarray, dict[str, float], dict[str, np.ndarray]]:
    """Landmarks for a stream of RGB frames: (landmarks, face_found, timing, extras).
    Exactly ``n_frames`` are expected; a frame without a face is NaN and marked, never dropped.
    ``extras``: the tracker's other per-frame arrays (the landmarker's blendshapes, transform and
    iris; none for FaceMesh), NaN where there is no face."""
    landmarks = np.full((n_frames, N_LANDMARKS, 3), np.nan, dtype=np.float32)
    found = np.zeros(n_frames, dtype=bool)
    t_model = 0.0
    t0 = time.perf_counter()
    i = -1
    with make_tracker(params, name) as tracker:
        extras = {k: np.full((n_frames, *shape), np.nan, dtype=np.float32) for k, shape in tracker.extra_shapes.items()}
        for i, frame in enumerate(frames):
            if i >= n_frames:
                raise ValueError(f"{name}: more frames than the {n_frames} expected")
            t = time.perf_counter()
            out = tracker.process(frame, i)
            t_model += time.perf_counter() - t
            if out is None:
                continue
            lm, more = out if isinstance(out, tuple) else (out, {})
            landmarks[i] = lm
            found[i] = True
            for k, v in more.items():
                extras[k][i] = v
    if i + 1 != n_frames:
        raise ValueError(f"{name}: {i + 1} frames decoded, {n_frames} expected")
    return landmarks, found, {"seconds_total": time.perf_counter() - t0, "seconds_model": t_model}, extras


def to_isotropic(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """MediaPipe normalised (x/w, y/h, z~x/w) -> every axis divided by the width."""
    out = np.array(landmarks, dtype=np.float64, copy=True)
    out[..., 1] *= height / width
    return out


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """4×4 similarity (rotation, uniform scale, translation) minimising ||T(src) - dst||².
    ``src`` (K, 3), or (F, K, 3) for F frames at once onto the same ``dst`` (K, 3): (F, 4, 4)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.ndim == 2:
        return umeyama(src[None], dst)[0]
    k = src.shape[1]
    mu_s, mu_d = src.mean(axis=1), dst.mean(axis=0)
    xs, xd = src - mu_s[:, None], dst - mu_d
    cov = np.einsum("ki,fkj->fij", xd, xs) / k
    u, d, vt = np.linalg.svd(cov)
    s = np.ones((len(src), 3))
    s[np.linalg.det(u) * np.linalg.det(vt) < 0, 2] = -1
    rot = u @ (s[:, :, None] * vt)
    scale = (d * s).sum(axis=1) / ((xs ** 2).sum(axis=(1, 2)) / k)
    out = np.zeros((len(src), 4, 4))
    out[:, :3, :3] = scale[:, None, None] * rot
    out[:, :3, 3] = mu_d - scale[:, None] * np.einsum("fij,fj->fi", rot, mu_s)
    out[:, 3, 3] = 1
    return out


def apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4×4 transform to points (..., 3); or F transforms (F, 4, 4) to F frames (F, K, 3)."""
    if transform.ndim == 3:
        return points @ transform[:, :3, :3].transpose(0, 2, 1) + transform[:, None, :3, 3]
    return points @ transform[:3, :3].T + transform[:3, 3]


def remove_pose(meshes: np.ndarray, found: np.ndarray, neutral: np.ndarray,
                stable: list[int] = STABLE, block: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Align every found frame (isotropic) to the neutral mesh on the stable landmarks.

    Returns (aligned (F, 468, 3), pose (F, 4, 4), residual (F,)): residual is the RMS
    distance of the aligned stable landmarks to the neutral's. Frames without a face
    stay NaN (pose NaN too). Frames are fitted ``block`` at a time.
    """
    n = len(meshes)
    aligned = np.full_like(meshes, np.nan, dtype=np.float32)
    pose = np.full((n, 4, 4), np.nan, dtype=np.float32)
    residual = np.full(n, np.nan, dtype=np.float32)
    target = np.asarray(neutral, np.float64)[stable]
    idx = np.flatnonzero(found)
    for lo in range(0, len(idx), block):
        i = idx[lo:lo + block]
        frames = np.asarray(meshes[i], np.float64)
        t = umeyama(frames[:, stable], target)
        a = apply(t, frames)
        aligned[i], pose[i] = a, t
        residual[i] = np.sqrt(((a[:, stable] - target) ** 2).sum(axis=2).mean(axis=1))
    return aligned, pose, residual


def quiet_frames(found: np.ndarray, energy: np.ndarray, silence_quantile: float, max_frames: int = 3000) -> np.ndarray:
    """Indices of the frames a recording's neutral mesh is taken from: frames with a face among
    the quietest ``silence_quantile`` of them by audio energy (every frame with a face when fewer
    than 10 are), at most ``max_frames``, spread evenly."""
    quiet = energy <= np.quantile(energy[found], silence_quantile)
    pick = found & quiet
    if pick.sum() < 10:
        pick = found.copy()
    idx = np.flatnonzero(pick)
    if len(idx) > max_frames:
        idx = idx[np.linspace(0, len(idx) - 1, max_frames).astype(int)]
    return idx


def neutral_from_frames(meshes: np.ndarray, candidates: np.ndarray, iterations: int = 3) -> np.ndarray:
    """A neutral mesh from many frames (isotropic): align them all to a reference on the
    stable landmarks and take the per-landmark median; repeat with the median as reference."""
    sel = np.asarray(meshes[candidates], np.float64)
    if len(sel) == 0:
        raise ValueError("no frames to build a neutral mesh from")
    ref = sel[0]
    for _ in range(iterations):
        aligned = apply(umeyama(sel[:, STABLE], ref[STABLE]), sel)
        ref = np.median(aligned, axis=0)
    return ref.astype(np.float32)


def lip_gap(meshes: np.ndarray) -> np.ndarray:
    """Inner-lip gap (distance between landmarks 13 and 14) per frame, in the meshes' units."""
    return np.linalg.norm(meshes[..., LOWER_LIP_INNER, :] - meshes[..., UPPER_LIP_INNER, :], axis=-1)


def landmarks_of_image(image: np.ndarray) -> np.ndarray | None:
    """Landmarks (468, 3) of the largest face in a still RGB image (MediaPipe static mode), or None."""
    import mediapipe as mp

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=4) as fm:
        res = fm.process(np.ascontiguousarray(image))
    if not res.multi_face_landmarks:
        return None
    faces = [np.array([(p.x, p.y, p.z) for p in f.landmark], dtype=np.float32) for f in res.multi_face_landmarks]
    return max(faces, key=lambda f: np.ptp(f[:, 0]) * np.ptp(f[:, 1]))


def face_triangles() -> np.ndarray:
    """MediaPipe's face-mesh triangles (852, 3), 0-based, counter-clockwise seen from the camera
    with y up and z towards the viewer; mouth and eyes open (``data/face_triangles.txt``, read
    from mediapipe's FACEMESH_TESSELATION by ``scripts/face_triangles.py``)."""
    from importlib.resources import files

    text = files("animote").joinpath("data/face_triangles.txt").read_text()
    return np.loadtxt(text.splitlines(), dtype=np.int32, comments="#").reshape(-1, 3)


def neutral_from_image(image: np.ndarray, reference: np.ndarray, name: str = "image") -> np.ndarray:
    """The neutral mesh (468, 3) of the face in a still RGB image, isotropic, brought onto
    ``reference`` (a model's neutral mesh) by a similarity on the stable landmarks, so that a
    model's offsets apply at the scale and pose they were learnt in. Keeps the face's shape."""
    lm = landmarks_of_image(image)
    if lm is None:
        raise ValueError(f"{name}: MediaPipe finds no face in this image; give a frontal photograph of one face")
    iso = to_isotropic(lm, image.shape[1], image.shape[0])
    return apply(umeyama(iso[STABLE], np.asarray(reference, np.float64)[STABLE]), iso).astype(np.float32)
