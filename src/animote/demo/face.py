"""Animate a still face photograph by warping it around its MediaPipe landmarks.

The landmarks are found once. Each expression parameter (mouth opening, lip
width, smile, brows) moves a set of landmarks linearly, and a thin-plate
spline through the moved landmarks (the rest of the face and the image border
held still) gives a smooth displacement field per parameter. A frame's field is
the parameters' weighted sum, composed with a small head motion (a similarity
transform) and applied with one ``cv2.remap``. Where the lips part, the exposed
mouth cavity is painted dark, as it is in a real open mouth.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.interpolate import RBFInterpolator

UPPER_INNER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LOWER_INNER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
UPPER_OUTER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291]
LOWER_OUTER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291]
CORNERS = [61, 291, 78, 308]
BROWS = [70, 63, 105, 66, 107, 46, 53, 52, 65, 55, 336, 296, 334, 293, 300, 276, 283, 282, 295, 285]
CHEEKS = [205, 425, 50, 280, 36, 266, 187, 411]
PARAMS = ("mouth_open", "lip_width", "smile", "brow")


def still_landmarks(image: np.ndarray) -> np.ndarray:
    """468 MediaPipe landmarks of the face in an RGB image, in pixels (x, y)."""
    from ..mesh import landmarks_of_image

    lm = landmarks_of_image(image)
    if lm is None:
        raise RuntimeError("MediaPipe found no face in the demo's still image")
    h, w = image.shape[:2]
    return lm[:, :2].astype(np.float64) * [w, h]


def crop_to_face(image: np.ndarray, lm: np.ndarray, size: tuple[int, int], face_fraction: float) -> np.ndarray:
    """Crop around the face so that it fills ``face_fraction`` of the frame height, resize to ``size``."""
    out_w, out_h = size
    top, bottom = lm[:, 1].min(), lm[:, 1].max()
    cx, cy = lm[:, 0].mean(), (top + bottom) / 2
    ch = (bottom - top) / face_fraction
    cw = ch * out_w / out_h
    H, W = image.shape[:2]
    scale = min(1.0, H / ch, W / cw)  # the crop must fit in the photograph
    ch, cw = ch * scale, cw * scale
    x0 = int(np.clip(cx - cw / 2, 0, W - cw))
    y0 = int(np.clip(cy - ch / 2, 0, H - ch))
    crop = image[y0:y0 + int(ch), x0:x0 + int(cw)]
    return cv2.resize(crop, (out_w, out_h), interpolation=cv2.INTER_CUBIC)


@dataclass
class FaceRig:
    """Everything needed to render frames: the still, its landmarks and one field per parameter."""

    image: np.ndarray  # (H, W, 3) uint8
    landmarks: np.ndarray  # (468, 2) pixels
    moves: dict[str, np.ndarray]  # parameter -> (468, 2) landmark displacement per unit
    fields: dict[str, np.ndarray]  # parameter -> (H, W, 2) displacement per unit
    center: np.ndarray  # head-motion pivot (x, y)
    coarse: np.ndarray | None = None  # (h, w, 2, parameters): the fields on the thin-plate grid

    def moved_landmarks(self, p: dict[str, float]) -> np.ndarray:
        return self.landmarks + sum(p[k] * self.moves[k] for k in PARAMS)


def _landmark_moves(lm: np.ndarray) -> dict[str, np.ndarray]:
    face_h = lm[:, 1].max() - lm[:, 1].min()
    mouth_c = lm[CORNERS].mean(axis=0)
    half_w = np.abs(lm[61, 0] - lm[291, 0]) / 2
    chin_y = lm[:, 1].max()
    corner_y = lm[[61, 291], 1].mean()
    lower_lip_y = lm[14, 1]
    moves = {k: np.zeros_like(lm) for k in PARAMS}

    # Opening: the jaw drops (lower lip, chin, jaw line below the mouth), the upper lip lifts a little.
    drop = 0.11 * face_h
    y = lm[:, 1]
    below = np.clip((y - corner_y) / max(lower_lip_y - corner_y, 1e-6), 0, 1)
    lateral = np.clip(1 - ((lm[:, 0] - mouth_c[0]) / (2.6 * half_w)) ** 2, 0.2, 1)
    jaw = (y > corner_y) & (y <= chin_y + 1)
    moves["mouth_open"][jaw, 1] = drop * below[jaw] * lateral[jaw]
    for i in UPPER_INNER + UPPER_OUTER:
        if i not in CORNERS:
            moves["mouth_open"][i, 1] = -0.12 * drop
    for i in CORNERS:
        moves["mouth_open"][i, 1] = 0.35 * drop

    # Lip width: lips stretch about the mouth centre (spread > 0, rounded < 0).
    lips = sorted(set(UPPER_INNER + LOWER_INNER + UPPER_OUTER + LOWER_OUTER))
    for i in lips:
        moves["lip_width"][i, 0] = 0.18 * (lm[i, 0] - mouth_c[0])

    # Smile: corners up and out, cheeks up. Negative is a frown.
    for i in [61, 291, 78, 308, 146, 375, 185, 409, 95, 324, 191, 415]:
        side = np.sign(lm[i, 0] - mouth_c[0])
        weight = 1.0 if i in CORNERS else 0.5
        moves["smile"][i] = weight * np.array([0.02 * face_h * side, -0.05 * face_h])
    for i in CHEEKS:
        moves["smile"][i, 1] = -0.02 * face_h

    # Brows up (raised) or down.
    for i in BROWS:
        moves["brow"][i, 1] = -0.04 * face_h
    return moves


def build_rig(image: np.ndarray, landmarks: np.ndarray, field_step: int = 4) -> FaceRig:
    """Precompute one displacement field per parameter (thin-plate spline, on a grid of
    ``field_step`` pixels, upsampled)."""
    h, w = image.shape[:2]
    moves = _landmark_moves(landmarks)
    face_h = landmarks[:, 1].max() - landmarks[:, 1].min()
    # Hold still: the image border, and a ring below the chin (the neck does not follow the jaw).
    border = np.array([[x, y] for x in np.linspace(0, w - 1, 9) for y in (0, h - 1)]
                      + [[x, y] for y in np.linspace(0, h - 1, 9) for x in (0, w - 1)])
    chin = landmarks[152]
    ring = np.array([[chin[0] + r * np.cos(a), chin[1] + r * np.sin(a)]
                     for r in (0.35 * face_h,) for a in np.linspace(0.15 * np.pi, 0.85 * np.pi, 7)])
    ctrl = np.concatenate([landmarks, border, ring])
    gy, gx = np.mgrid[0:h:field_step, 0:w:field_step]
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float64)
    fields, coarse = {}, []
    for k in PARAMS:
        values = np.concatenate([moves[k], np.zeros((len(border) + len(ring), 2))])
        rbf = RBFInterpolator(ctrl, values, kernel="thin_plate_spline", smoothing=1e-3)
        coarse.append(rbf(grid).reshape(gy.shape + (2,)).astype(np.float32))
        fields[k] = cv2.resize(coarse[-1], (w, h), interpolation=cv2.INTER_LINEAR)
    return FaceRig(image=image, landmarks=landmarks, moves=moves, fields=fields,
                   center=landmarks.mean(axis=0), coarse=np.stack(coarse, axis=-1))


def head_matrix(rig: FaceRig, roll_deg: float, tx: float, ty: float, scale: float) -> np.ndarray:
    """2×3 similarity (about the face centre) that moves the head in the frame."""
    m = cv2.getRotationMatrix2D((float(rig.center[0]), float(rig.center[1])), roll_deg, scale)
    m[:, 2] += (tx, ty)
    return m


def render(rig: FaceRig, p: dict[str, float], head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame: returns (RGB image, the moved landmarks in frame pixels)."""
    h, w = rig.image.shape[:2]
    inv = cv2.invertAffineTransform(head)
    gy, gx = _pixel_grid(h, w)
    # Frame pixel -> pixel of the expressive (unmoved head) face -> pixel of the still.
    hx = inv[0, 0] * gx + inv[0, 1] * gy + inv[0, 2]
    hy = inv[1, 0] * gx + inv[1, 1] * gy + inv[1, 2]
    # The displacement is smooth (a thin-plate spline on a 4-pixel grid): look it up through the
    # head motion on that grid, then upsample, rather than at every pixel (a third of the work).
    ch, cw = rig.coarse.shape[:2]
    cy, cx = _pixel_grid(ch, cw)
    fx, fy = (cx + 0.375) * (w / cw) - 0.5, (cy + 0.375) * (h / ch) - 0.5  # what cv2.resize maps cell k to
    ux = inv[0, 0] * fx + inv[0, 1] * fy + inv[0, 2]
    uy = inv[1, 0] * fx + inv[1, 1] * fy + inv[1, 2]
    disp = rig.coarse @ np.array([p[k] for k in PARAMS], np.float32)  # (ch, cw, 2)
    d = cv2.remap(disp, (ux + 0.5) * (cw / w) - 0.5, (uy + 0.5) * (ch / h) - 0.5, cv2.INTER_LINEAR,
                  borderMode=cv2.BORDER_REPLICATE)
    d = cv2.resize(d, (w, h), interpolation=cv2.INTER_LINEAR)
    frame = cv2.remap(rig.image, hx - d[..., 0], hy - d[..., 1], cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REFLECT)
    moved = rig.moved_landmarks(p)
    moved_px = moved @ head[:, :2].T + head[:, 2]
    # The mouth cavity: between where the lower lip was (teeth line) and where it is now.
    upper_edge = rig.landmarks[LOWER_INNER] + (moved[UPPER_INNER] - rig.landmarks[UPPER_INNER])
    lower_edge = moved[LOWER_INNER]
    gap = lower_edge[5, 1] - upper_edge[5, 1]
    if gap > 0.5:
        poly = np.concatenate([upper_edge, lower_edge[::-1]]) @ head[:, :2].T + head[:, 2]
        # Blend only around the mouth (the mask is 0 elsewhere): the same pixels, a tenth of the work.
        x0, y0 = np.maximum(np.floor(poly.min(axis=0)).astype(int) - 4, 0)
        x1, y1 = np.minimum(np.ceil(poly.max(axis=0)).astype(int) + 5, (w, h))
        if x1 > x0 and y1 > y0:
            mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
            cv2.fillPoly(mask, [np.round((poly - (x0, y0)) * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
            mask = cv2.GaussianBlur(mask, (3, 3), 0).astype(np.float32)[..., None] / 255.0
            cavity = np.array([45, 18, 22], np.float32)
            roi = frame[y0:y1, x0:x1]
            frame[y0:y1, x0:x1] = (roi.astype(np.float32) * (1 - mask) + cavity * mask).astype(np.uint8)
    return frame, moved_px


@functools.lru_cache(maxsize=4)
def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    gy.flags.writeable = gx.flags.writeable = False
    return gy, gx
