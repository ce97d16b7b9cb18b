"""Reading recordings: ffprobe, frame-rate normalisation, audio extraction, frame streams.

This module owns the recording-level contracts: the time base is the video
frame rate, and the pipeline's audio is mono float32 at ``sample_rate``,
aligned so that sample ``round(f * sr / fps)`` is the start of video frame ``f``.
ffmpeg is called directly (not through moviepy or pydub): it seeks frame-exactly,
streams raw frames through a pipe without holding a chunk in memory, and copies
streams without re-encoding.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from . import RecordingError
from .util import atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeInfo:
    """What a recording holds, read by ffprobe. Frame counts are exact (packets counted)."""

    path: str
    fps: float
    fps_fraction: str
    n_frames: int
    duration_s: float
    width: int  # as displayed: swapped for a recording rotated by 90° or 270°
    height: int
    rotation: int  # display rotation in degrees (phones tag portrait video); decoders apply it
    video_codec: str
    video_start_s: float
    audio_rate: int
    audio_channels: int
    audio_codec: str
    audio_start_s: float
    audio_duration_s: float
    variable_frame_rate: bool
    frame_interval_spread: float  # (max - min) / median of frame intervals

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ProbeInfo:
        return cls(**json.loads(text))

    @classmethod
    def load(cls, path: str | os.PathLike) -> ProbeInfo:
        """Read a ``probe.json`` written by the probe stage."""
        return cls.from_json(Path(path).read_text())


def _run(cmd: list[str], recording: str, what: str) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True)
    except FileNotFoundError as exc:
        raise RuntimeError(f"{cmd[0]} is not installed: run the bootstrap (scripts/bootstrap.sh)") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        tail = " | ".join(err[-3:]) if err else "no message"
        raise RecordingError(recording, f"{what} failed: {tail}")
    return proc


def _float(value, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def probe(path: str | os.PathLike, recording: str, vfr_tolerance: float = 0.02) -> ProbeInfo:
    """Read a recording's streams. Raises RecordingError for anything the pipeline cannot use."""
    path = Path(path)
    if not path.exists():
        raise RecordingError(recording, f"file not found: {path}")
    if path.stat().st_size == 0:
        raise RecordingError(recording, f"file is empty (0 bytes): {path}")
    proc = _run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        recording, f"ffprobe cannot read {path}",
    )
    meta = json.loads(proc.stdout or b"{}")
    streams = meta.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not s.get("disposition", {}).get("attached_pic")), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None:
        raise RecordingError(recording, f"no video stream in {path}")
    if audio is None:
        raise RecordingError(recording, f"no audio stream in {path}")

    # Exact frame count and frame-interval spread from the video packets' timestamps. A packet
    # flagged D is one the container says to discard: a copy cut (``ffmpeg -ss T -i ... -c copy``)
    # starts at the keyframe before T and lists the frames before T that way (an mp4 edit list).
    proc = _run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts,dts,flags",
         "-of", "csv=p=0", str(path)],
        recording, f"ffprobe cannot list the video packets of {path}",
    )
    pts, discarded = [], 0
    for line in proc.stdout.decode().split():
        fields = line.split(",")
        if "D" in fields[-1]:
            discarded += 1
        elif fields[0] not in ("", "N/A"):
            pts.append(int(fields[0]))
    if discarded:
        log.info("recording '%s': %d video packets before the start of a copy cut are not frames of it",
                 recording, discarded)
    n_frames = len(pts)
    if n_frames == 0:
        raise RecordingError(recording, f"the video stream of {path} has zero frames")
    tb = Fraction(video.get("time_base", "1/1"))
    spread = 0.0
    if n_frames > 2:
        d = np.diff(np.sort(np.asarray(pts, dtype=np.int64))).astype(float)
        med = float(np.median(d))
        spread = float((d.max() - d.min()) / med) if med > 0 else float("inf")
    avg = Fraction(video.get("avg_frame_rate", "0/1") or "0/1") if video.get("avg_frame_rate") != "0/0" else Fraction(0)
    real = Fraction(video.get("r_frame_rate", "0/1") or "0/1") if video.get("r_frame_rate") != "0/0" else Fraction(0)
    rate = avg if avg > 0 else real
    if rate <= 0:
        raise RecordingError(recording, f"ffprobe reports no frame rate for {path}")
    duration = _float(video.get("duration"), _float(meta.get("format", {}).get("duration")))
    if duration <= 0:
        duration = n_frames / float(rate)
    audio_duration = _float(audio.get("duration"), duration)
    if duration <= 0 or audio_duration <= 0:
        raise RecordingError(recording, f"{path} has zero length")
    rotation = 0
    for side in video.get("side_data_list", []):
        if "rotation" in side:
            rotation = int(round(float(side["rotation"]))) % 360
    if not rotation and video.get("tags", {}).get("rotate"):
        rotation = int(video["tags"]["rotate"]) % 360
    width, height = int(video["width"]), int(video["height"])
    if rotation in (90, 270):
        width, height = height, width
    vfr = spread > vfr_tolerance or (real > 0 and avg > 0 and abs(float(real - avg)) / float(avg) > vfr_tolerance)
    return ProbeInfo(
        path=str(path), fps=float(rate), fps_fraction=f"{rate.numerator}/{rate.denominator}",
        n_frames=n_frames, duration_s=duration,
        width=width, height=height, rotation=rotation, video_codec=video.get("codec_name", "?"),
        video_start_s=_float(video.get("start_time"), float(min(pts) * tb)),
        audio_rate=int(audio.get("sample_rate", 0)), audio_channels=int(audio.get("channels", 0)),
        audio_codec=audio.get("codec_name", "?"), audio_start_s=_float(audio.get("start_time")),
        audio_duration_s=audio_duration, variable_frame_rate=bool(vfr), frame_interval_spread=spread,
    )


def normalise_frame_rate(src: str | os.PathLike, dst: str | os.PathLike, fps: float, crf: int,
                         recording: str) -> None:
    """Re-encode ``src`` at a constant ``fps`` (audio copied), written atomically to ``dst``."""
    with atomic_path(dst) as tmp:
        _run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-map", "0:v:0", "-map", "0:a:0",
              "-fps_mode", "cfr", "-r", f"{fps:.6f}", "-c:v", "libx264", "-preset", "veryfast",
              "-crf", str(crf), "-pix_fmt", "yuv420p", "-c:a", "copy", str(tmp)],
             recording, f"re-encoding {src} at a constant {fps} fps")


def frame_to_sample(frame: int | np.ndarray, fps: float, sample_rate: int):
    """The audio sample where video frame ``frame`` starts (the pipeline's one mapping)."""
    return np.rint(np.asarray(frame, dtype=np.float64) * sample_rate / fps).astype(np.int64)


def decode_audio(video: str | os.PathLike, sample_rate: int, recording: str) -> np.ndarray:
    """The first audio stream, mono float32 at ``sample_rate``, as it decodes (not yet aligned to
    the video: see :func:`align_audio`). ffmpeg writes to a temporary file, which is faster than
    reading its pipe from Python."""
    with tempfile.TemporaryDirectory(prefix="animote-audio-") as tmp:
        raw = Path(tmp) / "audio.f32"
        try:
            n = decode_audio_file(video, raw, sample_rate)
        except (ValueError, FileNotFoundError) as exc:
            raise RecordingError(recording, f"decoding the audio of {video} failed: {exc}") from exc
        return read_samples(raw, 0, n)


def align_audio(audio: np.ndarray, info: ProbeInfo, sample_rate: int, recording: str) -> np.ndarray:
    """Decoded audio aligned to the video: sample 0 is the start of video frame 0, whatever the two
    streams' start times; zero-padded or trimmed to exactly the video's length."""
    offset = int(round((info.audio_start_s - info.video_start_s) * sample_rate))
    if offset > 0:
        audio = np.concatenate([np.zeros(offset, np.float32), audio])
    elif offset < 0:
        audio = audio[-offset:]
    want = int(frame_to_sample(info.n_frames, info.fps, sample_rate))
    diff_frames = (len(audio) - want) / sample_rate * info.fps
    if abs(diff_frames) > 1:
        log.warning("recording '%s': audio is %+.1f frames %s than the video; %s to match",
                    recording, abs(diff_frames), "longer" if diff_frames > 0 else "shorter",
                    "trimmed" if diff_frames > 0 else "zero-padded")
    if len(audio) < want:
        audio = np.concatenate([audio, np.zeros(want - len(audio), np.float32)])
    return audio[:want]


def extract_audio(video: str | os.PathLike, info: ProbeInfo, sample_rate: int, recording: str) -> np.ndarray:
    """Decode the first audio stream to mono float32 at ``sample_rate``, aligned to the video
    (:func:`decode_audio`, then :func:`align_audio`)."""
    return align_audio(decode_audio(video, sample_rate, recording), info, sample_rate, recording)


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono float32 audio atomically."""
    with atomic_path(path) as tmp:
        sf.write(tmp, np.asarray(audio, dtype=np.float32), sample_rate, subtype="FLOAT", format="WAV")


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read audio as mono float32 (channels averaged)."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return data.mean(axis=1).astype(np.float32), int(sr)


def _widen_pipe(fd: int, frame_bytes: int) -> None:
    """Let the pipe hold a whole frame (Linux F_SETPIPE_SZ), so ffmpeg can finish writing one
    while Python is busy; the default 64 KB makes decoder and consumer take turns."""
    try:
        import fcntl

        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        fcntl.fcntl(fd, 1031, min(limit, max(frame_bytes, 65536)))  # 1031: F_SETPIPE_SZ
    except (ImportError, OSError, ValueError):
        pass  # not Linux, or not allowed: correct, only slower


def iter_frames(video: str | os.PathLike, start: int, count: int, info: ProbeInfo,
                size: tuple[int, int] | None = None, threads: int = 1, prefetch: int = 4) -> Iterator[np.ndarray]:
    """Stream ``count`` RGB frames from frame ``start`` of a constant-frame-rate video.

    ffmpeg seeks to half a frame before ``start`` (so rounding cannot land on the
    neighbour), scales in the decoder when ``size`` (width, height) is given, and
    pipes raw frames. A reader thread keeps up to ``prefetch`` frames ready, so
    decoding overlaps with whatever the caller does with a frame; memory stays at
    a few frames whatever ``count`` is. Raises if the stream ends early, so a frame
    is never lost silently.
    """
    if count <= 0:
        return
    w, h = size if size else (info.width, info.height)
    seek = max(0.0, (start - 0.5) / info.fps)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-threads", str(threads), "-ss", f"{seek:.6f}",
           "-i", str(video), "-map", "0:v:0", "-frames:v", str(count), "-fps_mode", "passthrough"]
    if size:
        cmd += ["-vf", f"scale={w}:{h}:flags=fast_bilinear"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    frame_bytes = w * h * 3
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    _widen_pipe(proc.stdout.fileno(), frame_bytes)
    frames: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                frames.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        try:
            for _ in range(count):
                buf = bytearray(frame_bytes)
                view, got = memoryview(buf), 0
                while got < frame_bytes:
                    n = proc.stdout.readinto(view[got:])
                    if not n:
                        break
                    got += n
                if got < frame_bytes or not put(buf):
                    break
        finally:
            put(None)

    thread = threading.Thread(target=reader, name="ffmpeg-frames", daemon=True)
    thread.start()
    got = 0
    try:
        while got < count:
            buf = frames.get()
            if buf is None:
                break
            got += 1
            yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
    finally:
        stop.set()
        if proc.poll() is None and got < count:
            proc.kill()
        thread.join()
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        proc.wait()
    if got < count:
        raise RuntimeError(f"{video}: expected {count} frames from frame {start}, decoder gave {got}. {err[-300:]}")


def decode_audio_file(src: str | os.PathLike, dst: str | os.PathLike, sample_rate: int) -> int:
    """Decode the first audio stream of anything ffmpeg reads (wav, mp3, m4a, flac, a video's
    audio track; any rate, any channels) to mono float32 at ``sample_rate``, as raw little-endian
    samples in ``dst`` (streamed: memory does not grow with the duration). Returns the number of
    samples. Raises ValueError naming ``src`` when it holds no audio ffmpeg can decode."""
    src = Path(src)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such file")
    proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-map", "0:a:0", "-ac", "1",
                           "-ar", str(sample_rate), "-f", "f32le", "-acodec", "pcm_f32le", str(dst)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        err = proc.stderr.strip()
        if "matches no streams" in err or "does not contain any stream" in err:
            raise ValueError(f"{src}: the file has no audio track")
        last = err.splitlines()[-1] if err else f"ffmpeg exited with {proc.returncode}"
        raise ValueError(f"{src}: not an audio file ffmpeg can read ({last[-200:]})")
    n = os.path.getsize(dst) // 4
    if n == 0:
        raise ValueError(f"{src}: the audio track holds no samples")
    return n


def read_samples(raw: str | os.PathLike, start: int, count: int) -> np.ndarray:
    """Samples [start, start + count) of a raw float32 file written by :func:`decode_audio_file`."""
    return np.fromfile(raw, dtype="<f4", count=count, offset=4 * start).astype(np.float32)
