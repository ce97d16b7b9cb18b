"""The ``animote`` command.

``animote animate SPEECH --model MODEL.pt``: a trained model turns new speech into a face mesh
video (mp4, the speech muxed in), the mesh sequence (``.npz``) and, with ``--obj DIR``, one OBJ
per frame. The model's own feature backends compute the features (:func:`animote.features.
compute_features`, the call the feature stage makes), :class:`animote.predict.Predictor` predicts
(the evaluation stage's code), :func:`animote.render.render_video` draws (the evaluation video's).

Everything streams: the audio is decoded to a temporary file, then read, featurised and predicted
in blocks of ``--block-seconds`` (the training chunks' length: features see the same context as
in training) while the frames go to the encoder and the files, so memory does not grow with the
audio's length.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from . import __version__


class CommandError(Exception):
    """Bad input: the message (one line) names the file and what to do."""


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _load_model(path: Path, device: str):
    from .predict import Predictor
    from .train import resolve_device

    if not path.is_file():
        raise CommandError(f"{path}: no such checkpoint; a trained model is results/train/<sweep>/<experiment>/"
                           f"model.pt after `snakemake` has run")
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise CommandError("--device cuda: torch sees no CUDA device here; use --device auto or cpu")
    try:
        return Predictor.load(path, resolve_device(device))
    except (ValueError, RuntimeError) as exc:
        raise CommandError(str(exc)) from None


def _backends(predictor, model: Path, device: str, backend_models: dict[str, str]):
    """One loaded backend per role, from the checkpoint's specs; fails before any audio is read
    when a backend or its model is not available here."""
    from .features import ModelUnavailable, make_backend

    out = {}
    for role in predictor.roles:
        spec = dict(predictor.features[role]["spec"], device=device)
        if spec.get("type") == "whisper":  # one job alone on the machine: all its cores
            spec["threads"] = os.cpu_count() or 1
        if role in backend_models:
            spec["model"] = backend_models[role]
        try:
            backend = make_backend(spec)
            backend.load()
        except ModelUnavailable as exc:
            raise CommandError(f"{model}: its {role} features need {spec['type']} model {spec.get('model')!r}, "
                               f"which is not available here: {exc} (or point to it: --backend-model "
                               f"{role}=FOLDER)") from None
        except (ValueError, KeyError) as exc:
            raise CommandError(f"{model}: its {role} backend {spec.get('type')!r} cannot be used by this animote "
                               f"({exc}); retrain with a backend from features.backends") from None
        out[role] = backend
    return out


def _neutral(predictor, neutral: str | None) -> tuple[np.ndarray, str]:
    if neutral is None:
        rec = sorted(predictor.checkpoint["neutral"])[0]
        return predictor.neutral(rec), f"recording {rec} (from the model)"
    if Path(neutral).is_file():
        import cv2

        from .mesh import neutral_from_image

        image = cv2.imread(neutral, cv2.IMREAD_COLOR)
        if image is None:
            raise CommandError(f"{neutral}: not an image OpenCV can read (png, jpg, ...)")
        try:
            mesh = neutral_from_image(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), predictor.neutral(), neutral)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        return mesh, f"image {neutral}"
    if neutral in predictor.checkpoint["neutral"]:
        return predictor.neutral(neutral), f"recording {neutral} (from the model)"
    raise CommandError(f"--neutral {neutral}: no such image file, nor a recording the model was trained on "
                       f"({', '.join(sorted(predictor.checkpoint['neutral']))})")


def _silence_check(raw: Path, n_samples: int, speech: Path, floor_dbfs: float = -60.0) -> float:
    from .features import SAMPLE_RATE
    from .media import read_samples

    peak = 0.0
    step = SAMPLE_RATE * 60
    for s in range(0, n_samples, step):
        peak = max(peak, float(np.abs(read_samples(raw, s, step)).max(initial=0.0)))
    db = 20 * np.log10(max(peak, 1e-12))
    if db < floor_dbfs:
        raise CommandError(f"{speech}: the audio is silent (peak {db:.0f} dBFS, below {floor_dbfs:.0f}): "
                           f"nothing to animate")
    return db


def animate(speech: str | os.PathLike, model: str | os.PathLike, out: str | os.PathLike | None = None,
            neutral: str | None = None, obj_dir: str | os.PathLike | None = None, device: str = "auto",
            size: int = 512, block_seconds: float = 30.0, overlap: int | None = None, progress: bool = False,
            backend_models: dict[str, str] | None = None) -> dict[str, Any]:
    """Animate ``speech`` with the checkpoint ``model``; returns what was written and the timings.
    Raises :class:`CommandError` for bad input."""
    from .chunks import plan_chunks
    from .config import ChunkParams
    from .export import MeshSequenceWriter, ObjSequenceWriter
    from .features import SAMPLE_RATE, compute_features
    from .media import decode_audio_file, frame_to_sample, read_samples
    from .mesh import face_triangles
    from .render import Frame2D, render_video
    from .util import atomic_path

    t_start = time.perf_counter()
    speech, model = Path(speech), Path(model)
    if not speech.is_file():
        raise CommandError(f"{speech}: no such file")
    out = Path(out) if out else Path(f"{speech.stem}_animote.mp4")
    if out.suffix.lower() != ".mp4":
        raise CommandError(f"--out {out}: the video is written as mp4; name it OUT.mp4")
    if out.resolve() == speech.resolve():
        raise CommandError(f"--out {out} is the speech file itself; choose another name")
    npz = out.with_suffix(".npz")
    predictor = _load_model(model, device)
    if overlap is not None:
        predictor.overlap = overlap
    backends = _backends(predictor, model, predictor.device, backend_models or {})
    neutral_mesh, neutral_from = _neutral(predictor, neutral)
    fps = predictor.fps
    times = dict.fromkeys(("decode", "features", "prediction", "rendering", "export"), 0.0)

    out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".animote-", dir=out.parent)))
        raw = work / "speech.f32"
        t = time.perf_counter()
        try:
            n_samples = decode_audio_file(speech, raw, SAMPLE_RATE)
        except (ValueError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from None
        peak_db = _silence_check(raw, n_samples, speech)
        times["decode"] = time.perf_counter() - t
        seconds = n_samples / SAMPLE_RATE
        n_frames = int(round(seconds * fps))
        if n_frames < 2:
            raise CommandError(f"{speech}: {seconds * 1000:.0f} ms of audio is too short to animate")
        blocks = plan_chunks(n_frames, fps, ChunkParams(block_seconds, min(10.0, block_seconds / 3), False))

        def features() -> Iterator[dict[str, np.ndarray]]:
            for a, b in blocks:
                t0 = time.perf_counter()
                s0, s1 = (int(v) for v in frame_to_sample(np.array([a, b]), fps, SAMPLE_RATE))
                audio = read_samples(raw, s0, min(s1, n_samples) - s0)
                audio = np.pad(audio, (0, s1 - s0 - len(audio)))  # the last frame's audio may run out
                block = {}
                for role, backend in backends.items():
                    try:
                        block[role] = compute_features(audio, SAMPLE_RATE, backend, b - a, fps,
                                                       f"{speech} ({a / fps:.1f}-{b / fps:.1f} s)").frames
                    except ValueError as exc:
                        raise CommandError(str(exc)) from None
                times["features"] += time.perf_counter() - t0
                yield block

        triangles = face_triangles()
        info = {"speech": speech.name, "model": str(model), "experiment": predictor.checkpoint.get("experiment"),
                "model_run_id": predictor.checkpoint.get("run_id"), "dataset_hash": predictor.checkpoint["dataset_hash"],
                "features": {r: predictor.features[r]["cache_key"] for r in predictor.roles},
                "neutral": neutral_from, "animote_version": __version__, "frames": n_frames, "fps": fps,
                "units": "isotropic MediaPipe coordinates (divided by the image width), x right, y down, "
                         "z away from the camera; pose-free"}
        tmp_npz = stack.enter_context(atomic_path(npz))
        writer = MeshSequenceWriter(tmp_npz, n_frames, neutral_mesh, triangles, fps, info)
        stack.callback(writer.abort)
        objs = None
        if obj_dir is not None:
            tmp_obj = stack.enter_context(atomic_path(obj_dir))
            tmp_obj.mkdir()
            objs = ObjSequenceWriter(tmp_obj, n_frames, triangles, f"animote: {speech.name}", fps)
        bar = _progress(n_frames, progress)
        stack.callback(bar.close)

        def frames() -> Iterator[tuple[np.ndarray]]:
            pieces = predictor.stream(features(), n_frames)
            while True:
                t0, f0 = time.perf_counter(), times["features"]
                try:
                    piece = next(pieces, None)
                except ValueError as exc:  # features that do not fit the model (another backend's model given)
                    raise CommandError(f"{model}: {exc}") from None
                times["prediction"] += time.perf_counter() - t0 - (times["features"] - f0)
                if piece is None:
                    return
                t0 = time.perf_counter()
                meshes = neutral_mesh + piece
                writer.write(meshes)
                if objs is not None:
                    objs.write(meshes)
                times["export"] += time.perf_counter() - t0
                for m in meshes:
                    yield (m,)
                    bar.update(1)

        t = time.perf_counter()
        frame = Frame2D.around(neutral_mesh, size, margin=0.15)
        written = render_video(frames(), (speech.name,), frame, fps, out,
                               audio=speech, n_frames=n_frames)
        times["rendering"] = time.perf_counter() - t - times["features"] - times["prediction"] - times["export"]
        if written != n_frames:
            raise RuntimeError(f"{written} frames rendered, {n_frames} expected")
        t = time.perf_counter()
        writer.close()
        times["export"] += time.perf_counter() - t
    total = time.perf_counter() - t_start
    return {"video": str(out), "meshes": str(npz), "obj_dir": str(obj_dir) if obj_dir is not None else None,
            "frames": n_frames, "fps": fps, "audio_seconds": seconds, "peak_dbfs": peak_db, "blocks": len(blocks),
            "seconds": dict(times, total=total), "real_time_factor": seconds / total, "peak_rss_mb": _peak_rss_mb()}


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc="animate", disable=not enabled, file=sys.stderr,
                mininterval=0.5, dynamic_ncols=True)


def _backend_model(text: str) -> tuple[str, str]:
    role, sep, path = text.partition("=")
    if not sep or role not in ("phonetic", "emotion") or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: give ROLE=FOLDER with ROLE phonetic or emotion")
    return role, path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="animote", description="Audio-driven face mesh animation. The workflow (snakemake) trains and "
                                    "evaluates models; this command uses them.")
    p.add_argument("--version", action="version", version=f"animote {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    a = sub.add_parser(
        "animate", help="turn speech into a face mesh video, a mesh sequence and OBJs with a trained model",
        description="Turn speech into a face mesh animation with a trained model: an mp4 (the mesh drawn with "
                    "MediaPipe's face-mesh connections, projected orthographically, the speech muxed in), the "
                    "mesh sequence beside it (OUT.npz: meshes (frames, 468, 3), neutral, triangles, fps, info) "
                    "and, with --obj, one Wavefront OBJ per frame.",
        epilog="Example: animote animate hello.wav --model results/train/default/baseline/model.pt "
               "--out hello.mp4 --obj hello_obj")
    a.add_argument("speech", metavar="SPEECH",
                   help="audio to animate: anything ffmpeg reads (wav, mp3, m4a, flac, or a video's audio track), "
                        "any sample rate, mono or stereo")
    a.add_argument("--model", required=True, metavar="MODEL.pt",
                   help="a checkpoint written by the workflow's training (results/train/<sweep>/<experiment>/"
                        "model.pt); it names the feature backends, fps and neutral meshes it needs")
    a.add_argument("--out", metavar="OUT.mp4",
                   help="the video to write; the mesh sequence goes beside it as OUT.npz "
                        "(default: <SPEECH name>_animote.mp4 in the current folder)")
    a.add_argument("--neutral", metavar="IMAGE|RECORDING",
                   help="the face at rest that the predicted offsets move: a photograph of a face (MediaPipe finds "
                        "its mesh, brought to the model's scale), or the name of a recording the model was trained "
                        "on (default: the model's first training recording)")
    a.add_argument("--obj", metavar="DIR",
                   help="also write one OBJ per frame (frame_000001.obj, ...) into DIR, with MediaPipe's face-mesh "
                        "triangles (y up, for Blender)")
    a.add_argument("--size", type=int, default=512, metavar="PIXELS",
                   help="video height and width in pixels (default: %(default)s)")
    a.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the model and the feature backends run (default: %(default)s, CUDA when there is one)")
    a.add_argument("--block-seconds", type=float, default=30.0, metavar="S",
                   help="audio is featurised in blocks this long, like the training chunks (default: %(default)s)")
    a.add_argument("--overlap", type=int, metavar="FRAMES",
                   help="frames shared by consecutive prediction windows, crossfaded (default: a quarter window)")
    a.add_argument("--backend-model", type=_backend_model, action="append", default=[], metavar="ROLE=FOLDER",
                   help="where a feature backend's model is on this machine, when not where it was at training "
                        "(ROLE: phonetic or emotion); may be given twice")
    a.add_argument("--no-progress", action="store_true", help="no progress bar (there is none when stderr is not "
                                                              "a terminal)")
    a.add_argument("--traceback", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging, for --neutral IMAGE
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = parser().parse_args(argv)
    if args.command is None:
        parser().print_help()
        return 2
    from .features import ModelUnavailable

    try:
        if args.size < 64 or args.size % 2:
            raise CommandError(f"--size {args.size}: give an even number of pixels, 64 or more")
        if args.block_seconds < 5:
            raise CommandError(f"--block-seconds {args.block_seconds}: give 5 seconds or more")
        r = animate(args.speech, args.model, args.out, args.neutral, args.obj, args.device, args.size,
                    args.block_seconds, args.overlap, progress=sys.stderr.isatty() and not args.no_progress,
                    backend_models=dict(args.backend_model))
    except (CommandError, ModelUnavailable) as exc:
        if args.traceback:
            raise
        print(f"animote: error: {exc}", file=sys.stderr)
        return 2
    s = r["seconds"]
    obj = f", {r['frames']} OBJs in {r['obj_dir']}/" if r["obj_dir"] else ""
    print(f"animote: wrote {r['video']} ({r['frames']} frames, {r['audio_seconds']:.1f} s at {r['fps']:g} fps), "
          f"{r['meshes']}{obj}")
    print(f"animote: {r['real_time_factor']:.1f}x real time: decode {s['decode']:.1f} s, features "
          f"{s['features']:.1f} s, prediction {s['prediction']:.1f} s, rendering {s['rendering']:.1f} s, files "
          f"{s['export']:.1f} s; peak memory {r['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
