"""ARKit blendshape curves for engines: the CSV that Epic's Live Link Face app records (and
Unreal's Live Link Face importer reads), and a plain JSON.

The CSV layout, as the app writes it and its readers expect (checked against public readers of
app-recorded takes: the column list of the Blender add-on "LiveLinkFace for Blender"
(``LIVE_LINK_FACE_HEADER``), the 61 values of the Live Link Face UDP packet in JimWest's
PyLiveLinkFace, and Unity/Unreal importers' notes on the format):

- 63 columns: ``Timecode``, ``BlendShapeCount``, the 52 ARKit blendshapes in PascalCase in the
  app's order (:data:`ARKIT_CSV`: note ``JawRight`` before ``JawLeft`` and ``MouthRight`` before
  ``MouthLeft``, unlike the UDP packet), then ``HeadYaw, HeadPitch, HeadRoll`` and the yaw, pitch
  and roll of each eye; ``BlendShapeCount`` is 61 on every row and every row has 63 fields
  (readers stop at a row of another length; some read columns by position);
- ``Timecode`` is ``HH:MM:SS:FF.fff``: a frame count of the app's 60 fps clock plus its fraction,
  not milliseconds;
- blendshapes in [0, 1]; head and eye angles in degrees / 180 (-1..1), 0 when not known;
- a file named ``<slate>_<take>_<subject>.csv`` gives Unreal its subject name.

MediaPipe's scores (:data:`animote.landmarker.BLENDSHAPES`, camelCase, with ``_neutral`` and
without ``tongueOut``) map onto these by name; ``TongueOut`` is written as 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .landmarker import BLENDSHAPES
from .util import atomic_path

ARKIT_CSV = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeSquintLeft",
    "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight", "JawForward", "JawRight", "JawLeft", "JawOpen", "MouthClose", "MouthFunnel",
    "MouthPucker", "MouthRight", "MouthLeft", "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft", "MouthFrownRight",
    "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight", "MouthRollLower", "MouthRollUpper",
    "MouthShrugLower", "MouthShrugUpper", "MouthPressLeft", "MouthPressRight", "MouthLowerDownLeft",
    "MouthLowerDownRight", "MouthUpperUpLeft", "MouthUpperUpRight", "BrowDownLeft", "BrowDownRight", "BrowInnerUp",
    "BrowOuterUpLeft", "BrowOuterUpRight", "CheekPuff", "CheekSquintLeft", "CheekSquintRight", "NoseSneerLeft",
    "NoseSneerRight", "TongueOut",
)
ROTATIONS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw",
             "RightEyePitch", "RightEyeRoll")
HEADER = ("Timecode", "BlendShapeCount", *ARKIT_CSV, *ROTATIONS)
BLENDSHAPE_COUNT = len(ARKIT_CSV) + len(ROTATIONS)  # 61
APP_FPS = 60  # the app's timecode counts frames of a 60 fps clock


def arkit_name(mediapipe_name: str) -> str:
    return mediapipe_name[0].upper() + mediapipe_name[1:]


def to_arkit(scores: np.ndarray, names: Sequence[str] = BLENDSHAPES) -> np.ndarray:
    """(frames, 52) ARKit values in :data:`ARKIT_CSV` order from scores named ``names`` (MediaPipe's
    by default): clipped to [0, 1], 0 for a name the scores lack (``TongueOut``) and for frames
    without a face (NaN)."""
    scores = np.asarray(scores, np.float64)
    index = {arkit_name(n): i for i, n in enumerate(names)}
    out = np.zeros((len(scores), len(ARKIT_CSV)))
    for j, name in enumerate(ARKIT_CSV):
        if name in index:
            out[:, j] = scores[:, index[name]]
    return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0)


def timecode(frame: int, fps: float, start_s: float = 0.0) -> str:
    """The app's ``HH:MM:SS:FF.fff`` for video frame ``frame`` at ``fps``: FF counts the app's
    60 fps frames within the second, the three digits after the point their fraction."""
    t = start_s + frame / fps
    ticks = round(t * APP_FPS * 1000) / 1000  # 60 fps frames, to a thousandth
    whole = math.floor(ticks)
    seconds, ff = divmod(whole, APP_FPS)
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{int(ff):02d}.{round((ticks - whole) * 1000):03d}"


def head_angles(yaw_pitch_roll_deg: np.ndarray | None, n_frames: int) -> np.ndarray:
    """(frames, 9) of :data:`ROTATIONS` in degrees / 180; the eyes 0; the head 0 when not known."""
    out = np.zeros((n_frames, len(ROTATIONS)))
    if yaw_pitch_roll_deg is not None:
        out[:, :3] = np.clip(np.nan_to_num(np.asarray(yaw_pitch_roll_deg, np.float64), nan=0.0) / 180.0, -1, 1)
    return out


def write_livelink_csv(path: str | Path, scores: np.ndarray, fps: float, names: Sequence[str] = BLENDSHAPES,
                       head_deg: np.ndarray | None = None) -> Path:
    """The Live Link Face CSV of per-frame blendshape ``scores`` at ``fps``, one row per frame."""
    values = to_arkit(scores, names)
    rot = head_angles(head_deg, len(values))
    lines = [",".join(HEADER)]
    for i, (v, r) in enumerate(zip(values, rot)):
        lines.append(",".join([timecode(i, fps), str(BLENDSHAPE_COUNT), *(f"{x:.6f}" for x in v),
                               *(f"{x:.6f}" for x in r)]))
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    return path


def write_arkit_json(path: str | Path, scores: np.ndarray, fps: float, names: Sequence[str] = BLENDSHAPES,
                     head_deg: np.ndarray | None = None, info: dict | None = None) -> Path:
    """A plain JSON of the same curves: ``names`` (ARKit, camelCase), ``fps``, ``frames`` (one list
    of values per frame, in the names' order), ``head`` (yaw, pitch, roll in degrees, or null)."""
    values = to_arkit(scores, names)
    doc = {"names": [n[0].lower() + n[1:] for n in ARKIT_CSV], "fps": float(fps), "frames": np.round(values, 6).tolist(),
           "head": None if head_deg is None else np.round(np.nan_to_num(head_deg), 4).tolist(), "info": info or {}}
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(doc))
    return path


def read_arkit_json(path: str | Path) -> tuple[list[str], float, np.ndarray, np.ndarray | None]:
    doc = json.loads(Path(path).read_text())
    head = None if doc["head"] is None else np.asarray(doc["head"], np.float64)
    return doc["names"], doc["fps"], np.asarray(doc["frames"], np.float64), head


def euler_yaw_pitch_roll(transform: np.ndarray) -> np.ndarray:
    """Yaw, pitch and roll in degrees (frames, 3) of 4x4 facial transforms (MediaPipe's, the
    camera's frame: x right, y up, z towards the viewer), the scale removed (the nearest rotation,
    by SVD); NaN stays NaN."""
    from scipy.spatial.transform import Rotation

    m = np.asarray(transform, np.float64)[..., :3, :3]
    out = np.full((len(m), 3), np.nan)
    ok = np.isfinite(m).all(axis=(1, 2))
    if ok.any():
        u, _, vt = np.linalg.svd(m[ok])
        yxz = Rotation.from_matrix(u @ vt).as_euler("YXZ", degrees=True)  # yaw about y, pitch about x, roll about z
        out[ok] = yxz
    return out


def export_tracked(mesh_dir: str | Path, out: str | Path) -> dict:
    """A recording's tracked curves (the landmark stage's folder, ``results/<rec>/mesh``, tracked
    with ``mesh.tracker: landmarker``) as a Live Link Face CSV (``out`` ending in .csv) or the
    JSON (.json): the chunks in order, so the frames are the cleaned recording's (claps cut), the
    head's yaw, pitch and roll from the landmarker's transform. Returns what it wrote."""
    from .store import array_names, read_store, stores_in

    out = Path(out)
    if out.suffix.lower() not in (".csv", ".json"):
        raise ValueError(f"{out}: write ARKit curves as OUT.csv (Live Link Face) or OUT.json")
    stores = stores_in(mesh_dir)
    if not stores:
        raise ValueError(f"{mesh_dir}: no landmark stores (a recording's results/<rec>/mesh folder)")
    scores, transforms, fps = [], [], None
    for store in stores:
        if "blendshapes" not in array_names(store):
            attrs = read_store(store, "face_found")[1]
            raise ValueError(f"{store}: tracked with {attrs.get('tracker', 'facemesh')}, which gives no blendshapes; "
                             f"set mesh.tracker: landmarker and run the workflow again")
        arrays, attrs = read_store(store, "blendshapes", "transform")  # not the landmarks
        if list(attrs["blendshape_names"]) != list(BLENDSHAPES):
            raise ValueError(f"{store}: blendshapes named otherwise than MediaPipe's {len(BLENDSHAPES)}")
        scores.append(arrays["blendshapes"])
        transforms.append(arrays["transform"])
        fps = fps or float(attrs["fps"])
    scores, head = np.concatenate(scores), euler_yaw_pitch_roll(np.concatenate(transforms))
    if out.suffix.lower() == ".csv":
        write_livelink_csv(out, scores, fps, head_deg=head)
    else:
        write_arkit_json(out, scores, fps, head_deg=head, info={"source": str(mesh_dir)})
    return {"out": str(out), "frames": len(scores), "fps": fps, "chunks": len(stores),
            "no_face": int(np.isnan(scores).any(axis=1).sum())}
