"""Pictures and videos: loss curves, meshes projected orthographically and drawn with
MediaPipe's face-mesh connections (one frame, a per-vertex error map, an mp4 with the speech).
The evaluation stage and ``animote animate`` share these."""

from __future__ import annotations

import collections
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .util import atomic_path


def loss_curves(history: Sequence[Mapping[str, float]], path: str | Path, title: str,
                baseline: float | None = None) -> None:
    """Training and validation loss per epoch (and validation R² on a second axis), as a PNG.
    ``baseline``: the validation loss of predicting the training mean offset, drawn as a line."""
    plt = _plt()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key, label in (("train_loss", "train loss"), ("val_loss", "validation loss")):
        ys = [h.get(key, float("nan")) for h in history]
        ax.plot(epochs, ys, marker=".", label=label)
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls="--", lw=1, label="validation: mean offset")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (normalised offsets)")
    ax.set_title(title)
    if any("val_r2" in h for h in history):
        ax2 = ax.twinx()
        ax2.plot(epochs, [h.get("val_r2", float("nan")) for h in history], color="tab:green", ls=":",
                 label="validation R²")
        ax2.set_ylabel("validation R² (offsets)")
        ax2.set_ylim(min(0.0, min(h.get("val_r2", 0.0) for h in history)), 1.0)
        ax2.legend(loc="upper center", fontsize=8)
    ax.legend(loc="upper right", fontsize=8)
    _save(fig, path)


# --- meshes in 2D (paper §3.1: orthographic projection) ------------------------------------------


def _connections() -> dict[str, np.ndarray]:
    """MediaPipe's face-mesh edge sets as (E, 2) arrays: the tessellation and the feature contours."""
    from mediapipe.python.solutions import face_mesh_connections as fm

    def arr(s):
        return np.array(sorted(s), dtype=np.int64)

    return {"tessellation": arr(fm.FACEMESH_TESSELATION), "lips": arr(fm.FACEMESH_LIPS),
            "eyes": arr(fm.FACEMESH_LEFT_EYE | fm.FACEMESH_RIGHT_EYE),
            "brows": arr(fm.FACEMESH_LEFT_EYEBROW | fm.FACEMESH_RIGHT_EYEBROW),
            "oval": arr(fm.FACEMESH_FACE_OVAL)}


@dataclass(frozen=True)
class Frame2D:
    """Orthographic projection: drop z, fit the mesh's x-y box (with a margin) into ``size``
    pixels, the same box for every frame so motion shows. Meshes are in image orientation
    (y down), as MediaPipe gives them."""

    x0: float
    y0: float
    scale: float  # pixels per mesh unit
    size: int

    @classmethod
    def around(cls, vertices: np.ndarray, size: int, margin: float = 0.12) -> Frame2D:
        v = np.asarray(vertices).reshape(-1, 3)
        lo, hi = np.nanmin(v[:, :2], axis=0), np.nanmax(v[:, :2], axis=0)
        span = float(max(hi - lo)) * (1 + 2 * margin)
        centre = (lo + hi) / 2
        return cls(float(centre[0] - span / 2), float(centre[1] - span / 2), size / max(span, 1e-9), size)

    def __call__(self, vertices: np.ndarray) -> np.ndarray:
        v = np.asarray(vertices)
        return np.stack([(v[..., 0] - self.x0) * self.scale, (v[..., 1] - self.y0) * self.scale], axis=-1)


_STYLE = (("tessellation", (185, 185, 185), 1), ("oval", (90, 90, 90), 1), ("brows", (40, 110, 200), 2),
          ("eyes", (40, 140, 60), 2), ("lips", (200, 40, 40), 2))


def draw_mesh(vertices: np.ndarray, frame: Frame2D, title: str = "", canvas: np.ndarray | None = None) -> np.ndarray:
    """One mesh (468, 3) drawn with MediaPipe's face-mesh connections on a white RGB square."""
    import cv2

    img = np.full((frame.size, frame.size, 3), 255, np.uint8) if canvas is None else canvas
    # far-off or non-finite points (a degenerate neutral mesh, a diverged model) clipped near the canvas:
    # OpenCV would otherwise trace lines billions of pixels long
    xy = np.clip(np.nan_to_num(frame(vertices), nan=-frame.size), -2 * frame.size, 3 * frame.size)
    pts = np.round(xy * 16).astype(np.int32)  # 4 bits of sub-pixel precision
    conns = _connections_cached()
    for name, colour, width in _STYLE:
        e = conns[name]
        cv2.polylines(img, list(np.stack([pts[e[:, 0]], pts[e[:, 1]]], axis=1)), False, colour, width,
                      cv2.LINE_AA, shift=4)
    if title:
        cv2.putText(img, title, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return img


@lru_cache(maxsize=1)
def _connections_cached() -> dict[str, np.ndarray]:
    return _connections()


BAR_HEIGHT = 16  # pixels per bar of a video's strip


def draw_bars(values: np.ndarray, labels: Sequence[str], width: int) -> np.ndarray:
    """A strip of horizontal bars (one per label, ``values`` in [0, 1]) on white, ``width`` wide;
    its height is even, as yuv420p wants."""
    import cv2

    h = BAR_HEIGHT * len(labels) + 4
    h += h % 2
    img = np.full((h, width, 3), 255, np.uint8)
    x0 = min(170, width // 3)
    for i, (label, v) in enumerate(zip(labels, np.clip(np.nan_to_num(np.asarray(values, np.float64)), 0, 1))):
        y = 2 + i * BAR_HEIGHT
        cv2.putText(img, label, (4, y + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.rectangle(img, (x0, y + 3), (width - 6, y + BAR_HEIGHT - 3), (225, 225, 225), -1)
        cv2.rectangle(img, (x0, y + 3), (x0 + int(round(v * (width - 6 - x0))), y + BAR_HEIGHT - 3), (200, 40, 40), -1)
    return img


def render_video(panels: Iterable[Sequence[np.ndarray]], titles: Sequence[str], frame: Frame2D, fps: float,
                 out: str | Path, audio: str | Path | None = None, n_frames: int | None = None,
                 crf: int = 20, threads: int = 2, bars: Sequence[str] = ()) -> int:
    """An mp4 (H.264, yuv420p; AAC audio muxed from ``audio`` when given) of meshes side by side:
    ``panels`` yields, per frame, one (468, 3) mesh per title, and with ``bars`` (labels) one more
    item, the frame's values in [0, 1] drawn as a strip of bars under the meshes (blendshape
    channels). Streams: memory does not grow with the number of frames. Written atomically;
    returns the frames written."""
    size = frame.size
    width = size * len(titles)
    strip = draw_bars(np.zeros(len(bars)), bars, width).shape[0] if bars else 0
    with atomic_path(out) as tmp:
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{size + strip}", "-r", f"{fps:.6f}", "-i", "-"]
        if audio is not None:
            cmd += ["-i", str(audio), "-map", "0:v", "-map", "1:a:0", "-c:a", "aac", "-b:a", "128k"]
            if n_frames is not None:  # the audio track as long as the video, not longer
                cmd += ["-t", f"{n_frames / fps:.6f}"]
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p",
                "-movflags", "+faststart", "-f", "mp4", str(tmp)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        written = 0

        def draw(item) -> bytes:
            img = np.concatenate([draw_mesh(m, frame, t) for m, t in zip(item, titles)], axis=1)
            if bars:
                img = np.concatenate([img, draw_bars(item[len(titles)], bars, width)], axis=0)
            return img.tobytes()

        # OpenCV draws without the GIL: frames are drawn on ``threads`` threads, in order, while
        # ffmpeg encodes the ones before them; at most 2 * threads frames wait in memory.
        with ThreadPoolExecutor(threads) as pool:
            pending: collections.deque = collections.deque()
            try:
                for meshes in panels:
                    pending.append(pool.submit(draw, meshes))
                    if len(pending) >= 2 * threads:
                        proc.stdin.write(pending.popleft().result())
                        written += 1
                while pending:
                    proc.stdin.write(pending.popleft().result())
                    written += 1
                proc.stdin.close()
            except BrokenPipeError:
                pass
            finally:
                for f in pending:
                    f.cancel()
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed writing {out}: {err[-400:]}")
    return written


# --- figures of one evaluation (paper Figs 5.2 and 5.3) ----------------------------------------


def _save(fig, path: str | Path) -> None:
    """Lay out, write atomically as PNG, and free the figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mesh_comparison(true: np.ndarray, pred: np.ndarray, path: str | Path, title: str) -> None:
    """True and predicted mesh of one frame (468, 3, absolute), orthographic, side by side and
    overlaid (paper Fig 5.2)."""
    plt = _plt()
    frame = Frame2D.around(np.stack([true, pred]), 400)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3), dpi=100)
    lips = _connections_cached()["lips"]
    for ax, (name, verts, colour) in zip(axes, (("true", true, "tab:blue"), ("predicted", pred, "tab:red"))):
        ax.imshow(draw_mesh(verts, frame))
        ax.set_title(name)
    p_t, p_p = frame(true), frame(pred)
    ax = axes[2]
    ax.scatter(p_t[:, 0], p_t[:, 1], s=2, c="tab:blue", label="true")
    ax.scatter(p_p[:, 0], p_p[:, 1], s=2, c="tab:red", label="predicted")
    for a, b in lips:
        ax.plot(p_t[[a, b], 0], p_t[[a, b], 1], c="tab:blue", lw=0.8)
        ax.plot(p_p[[a, b], 0], p_p[[a, b], 1], c="tab:red", lw=0.8)
    ax.set_xlim(0, frame.size)
    ax.set_ylim(frame.size, 0)
    ax.set_title("overlaid")
    ax.legend(loc="lower right", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
    fig.suptitle(title)
    _save(fig, path)


def error_map(neutral: np.ndarray, error: np.ndarray, path: str | Path, title: str,
              label: str = "mean vertex error (mesh units)") -> None:
    """Per-vertex error drawn on the neutral mesh's orthographic projection (paper Fig 5.3)."""
    plt = _plt()
    frame = Frame2D.around(neutral, 400)
    p = frame(neutral)
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=100)
    tess = _connections_cached()["tessellation"]
    for a, b in tess:
        ax.plot(p[[a, b], 0], p[[a, b], 1], c="0.85", lw=0.4, zorder=0)
    sc = ax.scatter(p[:, 0], p[:, 1], c=error, s=14, cmap="inferno_r", zorder=1)
    fig.colorbar(sc, ax=ax, label=label, shrink=0.8)
    ax.set_xlim(0, frame.size)
    ax.set_ylim(frame.size, 0)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    _save(fig, path)


def lip_gap_plot(fps: float, true_gap: np.ndarray, pred_gap: np.ndarray, path: str | Path, title: str,
                 mask: np.ndarray | None = None) -> None:
    """The inner-lip gap over time, true and predicted: what lip sync looks like."""
    plt = _plt()
    t = np.arange(len(true_gap)) / fps
    tg = np.where(mask, true_gap, np.nan) if mask is not None else true_gap
    fig, ax = plt.subplots(figsize=(10, 3), dpi=100)
    ax.plot(t, tg, lw=1, label="true")
    ax.plot(t, pred_gap, lw=1, label="predicted")
    ax.set_xlabel("time in the chunk (s)")
    ax.set_ylabel("inner-lip gap (mesh units)")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    _save(fig, path)


def channel_plot(fps: float, split, preds, chunk: int, path: str | Path, title: str) -> None:
    """The channel targets of one chunk of ``split`` (an :class:`animote.evaluate.Split`) over time:
    the main mouth blendshapes (when the dataset holds them) and the head's yaw, pitch and roll,
    the truth and, where ``preds`` ({target: (N, C)}) has the target, the prediction."""
    from .targets import HEAD_POSE, MOUTH_CHANNELS

    plt = _plt()
    s = split.chunk(chunk)
    rows = []
    for target, wanted in (("blendshapes", MOUTH_CHANNELS), ("head_pose", HEAD_POSE[:3])):
        if target not in split.channels:
            continue
        names = split.channel_names[target]
        for n in wanted:
            if n in names:
                i = names.index(n)
                p = preds[target][s, i] if target in preds else None
                rows.append((n if target == "blendshapes" else f"head {n} (°)", split.channels[target][s, i], p))
    fig, axes = plt.subplots(max(len(rows), 1), 1, figsize=(9, 1.3 * max(len(rows), 1) + 0.6), dpi=100,
                             sharex=True, squeeze=False)
    t = np.arange(s.stop - s.start) / fps
    mask = split.mask[s]
    for ax, (label, true, pred) in zip(axes[:, 0], rows):
        ax.plot(t, np.where(mask, true, np.nan), c="0.2", lw=1.0, label="tracked (truth)")
        if pred is not None:
            ax.plot(t, pred, c="tab:red", lw=1.0, label="predicted")
        ax.set_ylabel(label, rotation=0, ha="right", fontsize=8)
        ax.tick_params(labelsize=7)
    if rows:
        axes[0, 0].legend(loc="upper right", fontsize=7)
    else:
        axes[0, 0].text(0.5, 0.5, "the dataset holds no channel target", ha="center", transform=axes[0, 0].transAxes)
    axes[-1, 0].set_xlabel("seconds")
    predicted = [t for t in ("blendshapes", "head_pose") if t in preds]
    fig.suptitle(f"{title}: " + (f"predicted {', '.join(predicted)}" if predicted else "offsets only; the truth"),
                 fontsize=10)
    _save(fig, path)


def clap_picture(audio: np.ndarray, sample_rate: int, env_db: np.ndarray, hop: int, claps_s: Sequence[float],
                 cuts: Sequence[tuple[float, float]], path: str | Path, title: str, zoom: int = 8) -> None:
    """What clap removal did to one recording: the high-passed envelope over the whole
    recording with every detected clap and its cut marked, and a zoom on each clap's waveform
    (the first ``zoom``)."""
    plt = _plt()
    n_zoom = min(len(claps_s), zoom)
    fig = plt.figure(figsize=(12, 3.2 + (1.8 if n_zoom else 0)), dpi=100)
    grid = fig.add_gridspec(2 if n_zoom else 1, max(n_zoom, 1), height_ratios=[1.6, 1] if n_zoom else [1])
    ax = fig.add_subplot(grid[0, :])
    step = max(1, len(env_db) // 6000)  # plot the loudest window of each group: peaks stay visible
    n = len(env_db) // step * step
    env = env_db[:n].reshape(-1, step).max(axis=1) if n else env_db
    t = np.arange(len(env)) * step * hop / sample_rate
    ax.plot(t, env, lw=0.6, color="0.3")
    for a, b in cuts:
        ax.axvspan(a, b, color="tab:red", alpha=0.15, lw=0)
    ax.set_ylim(max(float(np.percentile(env_db, 1)) - 5, -120) if len(env_db) else -120, 8)
    for i, c in enumerate(claps_s):
        ax.axvline(c, color="tab:red", lw=0.8)
        ax.text(c, 7, f" {i + 1}", color="tab:red", fontsize=7, ha="left", va="top")
    ax.set_xlim(0, max(len(audio) / sample_rate, 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("high-passed peak (dBFS)")
    ax.set_title(f"{title}: {len(claps_s)} claps (red: cut)", fontsize=10)
    for i, c in enumerate(claps_s[:n_zoom]):
        z = fig.add_subplot(grid[1, i])
        a, b = max(0, int((c - 0.05) * sample_rate)), min(len(audio), int((c + 0.15) * sample_rate))
        z.plot((np.arange(a, b) / sample_rate - c) * 1000, audio[a:b], lw=0.5, color="tab:blue")
        z.axvline(0, color="tab:red", lw=0.6)
        z.set_title(f"{i + 1}: {c:.2f} s", fontsize=8)
        z.set_xlabel("ms", fontsize=7)
        z.tick_params(labelsize=6)
        z.set_ylim(-1.05, 1.05)
    _save(fig, path)


def mesh_preview(path, frame: np.ndarray, landmarks: np.ndarray | None, neutral: np.ndarray, title: str,
                 source: str, panel: int = 512) -> None:
    """The mesh stage's picture: a frame with its landmarks beside the recording's neutral mesh."""
    import cv2

    h, w = frame.shape[:2]
    scale = panel / max(h, w)
    left = cv2.resize(frame, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    left = np.ascontiguousarray(left)
    if landmarks is not None:
        for x, y in landmarks[:, :2] * [left.shape[1], left.shape[0]]:
            cv2.circle(left, (int(round(x)), int(round(y))), 1, (0, 255, 0), -1, cv2.LINE_AA)
    right = np.full((panel, panel, 3), 255, np.uint8)
    pts = neutral[:, :2]
    lo, span = pts.min(axis=0), np.ptp(pts, axis=0).max()
    xy = (pts - lo) / span * panel * 0.8 + panel * 0.1
    for x, y in xy:
        cv2.circle(right, (int(round(x)), int(round(y))), 2, (40, 40, 200), -1, cv2.LINE_AA)
    canvas = np.full((max(left.shape[0], panel) + 30, left.shape[1] + panel, 3), 255, np.uint8)
    canvas[30:30 + left.shape[0], :left.shape[1]] = left
    canvas[30:30 + panel, left.shape[1]:] = right
    cv2.putText(canvas, f"{title}: landmarks on the frame", (5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    cv2.putText(canvas, f"neutral mesh: {source[:48]}", (left.shape[1] + 5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (0, 0, 0), 1)
    ok, png = cv2.imencode(".png", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(png.tobytes())
