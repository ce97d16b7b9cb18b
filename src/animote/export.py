"""Mesh sequences out of animote, in files other tools open (this module owns both formats).

- ``.npz`` (``numpy.load``): ``meshes`` float32 (frames, 468, 3), ``neutral`` (468, 3),
  ``triangles`` int32 (852, 3), ``fps`` float64 (), ``info`` a JSON string (what produced it:
  model, speech, versions, units). Meshes are in animote's isotropic mesh units (MediaPipe's
  normalised coordinates with every axis divided by the image width; x right, y down, z away from
  the camera), pose-free, on the model's neutral mesh frame.
- Wavefront ``.obj``, one per frame, for Blender and the like: the same vertices with y and z
  negated (y up, z towards the viewer, a rotation, so the winding stays counter-clockwise from the
  front) and MediaPipe's face-mesh triangles.

Both are written while the frames stream in, so memory does not grow with the sequence, and
appear under their final names only when complete.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

OBJ_AXES = np.array([1.0, -1.0, -1.0])  # mesh units -> OBJ: y up, z towards the viewer


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


class MeshSequenceWriter:
    """Streams (k, V, 3) meshes into an ``.npz`` at ``tmp_path`` (the caller renames it)."""

    def __init__(self, tmp_path: str | Path, n_frames: int, neutral: np.ndarray, triangles: np.ndarray, fps: float,
                 info: Mapping[str, Any]):
        self.path = Path(tmp_path)
        self.n, self.written = int(n_frames), 0
        self.shape = (self.n,) + tuple(np.shape(neutral))
        self.small = {"neutral": np.asarray(neutral, np.float32), "triangles": np.asarray(triangles, np.int32),
                      "fps": np.float64(fps), "info": np.array(json.dumps(dict(info), sort_keys=True))}
        self._npy_path = self.path.with_name(self.path.name + ".meshes.npy")
        self._npy = open(self._npy_path, "wb")
        np.lib.format.write_array_header_1_0(self._npy, {"descr": "<f4", "fortran_order": False, "shape": self.shape})

    def write(self, meshes: np.ndarray) -> None:
        meshes = np.ascontiguousarray(meshes, dtype="<f4")
        if meshes.shape[1:] != self.shape[1:] or self.written + len(meshes) > self.n:
            raise ValueError(f"mesh block {meshes.shape} does not fit a sequence of shape {self.shape} "
                             f"after {self.written} frames")
        self._npy.write(meshes.tobytes())
        self.written += len(meshes)

    def add(self, name: str, value: np.ndarray) -> None:
        """One more array of the file (a whole sequence: the predicted blendshapes, head pose)."""
        self.small[name] = np.asarray(value)

    def close(self) -> None:
        self._npy.close()
        try:
            if self.written != self.n:
                raise ValueError(f"{self.written} frames written, {self.n} expected")
            with zipfile.ZipFile(self.path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                zf.write(self._npy_path, "meshes.npy")
                for key, value in self.small.items():
                    zf.writestr(f"{key}.npy", _npy_bytes(value))
        finally:
            os.unlink(self._npy_path)

    def abort(self) -> None:
        self._npy.close()
        if self._npy_path.exists():
            os.unlink(self._npy_path)


def read_mesh_sequence(path: str | Path) -> dict[str, Any]:
    """An ``.npz`` written above: arrays, with ``info`` parsed and ``fps`` a float."""
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    out["info"] = json.loads(str(out["info"]))
    out["fps"] = float(out["fps"])
    return out


class ObjSequenceWriter:
    """One OBJ per frame, ``frame_000001.obj`` ... in ``folder`` (the caller's temporary folder),
    as the frames stream in; the faces' text is built once."""

    def __init__(self, folder: str | Path, n_frames: int, triangles: np.ndarray, comment: str, fps: float):
        self.folder, self.n, self.fps, self.comment = Path(folder), int(n_frames), fps, comment
        self.faces_text = obj_faces_text(triangles)
        self.written = 0

    def write(self, meshes: np.ndarray) -> None:
        for m in meshes:
            self.written += 1
            (self.folder / f"frame_{self.written:06d}.obj").write_text(
                obj_text(m, self.faces_text, f"{self.comment}, frame {self.written} of {self.n} at {self.fps:g} fps"))


def obj_text(vertices: np.ndarray, faces_text: str, comment: str = "") -> str:
    v = np.asarray(vertices, np.float64) * OBJ_AXES
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    return head + "".join(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in v) + faces_text


def obj_faces_text(triangles: np.ndarray) -> str:
    return "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in np.asarray(triangles))


def read_obj(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices in mesh units, 0-based triangles) of an OBJ written here."""
    verts, faces = [], []
    for line in Path(path).read_text().splitlines():
        if line.startswith("v "):
            verts.append([float(t) for t in line.split()[1:4]])
        elif line.startswith("f "):
            faces.append([int(t.split("/")[0]) - 1 for t in line.split()[1:]])
    return np.array(verts) * OBJ_AXES, np.array(faces, np.int64)
