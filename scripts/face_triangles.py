"""Regenerate src/animote/data/face_triangles.txt: MediaPipe's face-mesh triangles.

The mediapipe wheel ships no mesh file, but its ``FACEMESH_TESSELATION`` is written in its
source as the three directed edges of each triangle in turn ((a, b), (b, c), (c, a), ...), so the
triangles are read back from that order. The result is the 852 triangles of the surface, with the
mouth and eyes left open (MediaPipe's canonical OBJ closes them with 46 more). Triangles are wound
counter-clockwise seen from the camera in the OBJ axes animote writes (x right, y up, z towards the
viewer). tests/test_animate.py checks the shipped file against the installed mediapipe.

    .venv/bin/python scripts/face_triangles.py
"""

import inspect
import re
from pathlib import Path

import numpy as np
from mediapipe.python.solutions import face_mesh_connections as fm
from skimage import data

from animote.mesh import landmarks_of_image, to_isotropic

src = inspect.getsource(fm)
body = re.search(r"FACEMESH_TESSELATION = frozenset\(\[(.*?)\]\)", src, re.S).group(1)
pairs = [(int(a), int(b)) for a, b in re.findall(r"\((\d+),\s*(\d+)\)", body)]
tris = []
for i in range(0, len(pairs), 3):
    (a, b), (b2, c), (c2, a2) = pairs[i:i + 3]
    assert (b, c, a) == (b2, c2, a2), f"edges {i}..{i + 2} do not close a triangle"
    tris.append((a, b, c))
tris = np.array(tris)

image = data.astronaut()
v = to_isotropic(landmarks_of_image(image), image.shape[1], image.shape[0])
v = v * np.array([1, -1, -1])  # OBJ axes: y up, z towards the viewer
normals = np.cross(v[tris[:, 1]] - v[tris[:, 0]], v[tris[:, 2]] - v[tris[:, 0]])
if (normals[:, 2] > 0).mean() < 0.5:  # most face the camera once wound counter-clockwise
    tris = tris[:, [0, 2, 1]]

out = Path(__file__).resolve().parents[1] / "src/animote/data/face_triangles.txt"
header = ("# MediaPipe face-mesh triangles (0-based vertex indices), read from mediapipe 0.10.21's\n"
          "# FACEMESH_TESSELATION by scripts/face_triangles.py. Counter-clockwise seen from the camera\n"
          "# with y up and z towards the viewer. Mouth and eyes are open.\n")
out.write_text(header + "".join(f"{a} {b} {c}\n" for a, b, c in tris))
print(f"{len(tris)} triangles -> {out}")
