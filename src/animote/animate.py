"""Inference: a trained model turns new speech into face meshes, and the files a user wants.

:func:`animate` takes speech (anything ffmpeg reads) and a checkpoint and writes a mesh video
(mp4, the speech muxed in), the mesh sequence (``.npz``, with the blendshapes and head pose when
the model predicts them), optionally one OBJ per frame and the ARKit curves for engines
(``arkit``: a Live Link Face CSV or a JSON, :mod:`animote.arkit`); it
returns what it wrote and where the time went (:class:`Timings`). The model's own feature
backends compute the features (:func:`animote.features.compute_features`, the call the feature
stage makes), :class:`animote.predict.Predictor` predicts (the evaluation stage's code),
:func:`animote.render.render_video` draws (the evaluation video's).

Everything streams: the audio is decoded to a temporary file, then read, featurised and predicted
in blocks of ``block_seconds`` (the training chunks' length: features see the same context as in
training) while the frames go to the encoder and the files, so memory does not grow with the
audio's length. ``animote animate`` (:mod:`animote.cli`) parses its arguments into this call and
prints the record.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__

PHASES = ("decode", "features", "prediction", "rendering", "export")


class InputError(Exception):
    """Bad input: the message (one line) names the file and what to do."""


@dataclass
class Timings:
    """Seconds spent in each phase. The phases interleave (the encoder pulls frames, which pull
    predictions, which pull features), so each is timed where it runs and rendering is what is
    left of the drawing loop."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t


@dataclass
class Animation:
    """What :func:`animate` wrote, and its timings."""

    video: str
    meshes: str
    obj_dir: str | None
    arkit: str | None
    targets: list[str]  # what the model predicted: offsets, and its channel targets
    frames: int
    fps: float
    audio_seconds: float
    peak_dbfs: float
    blocks: int
    seconds: dict[str, float]  # per phase, and the total
    real_time_factor: float  # audio seconds per second of work
    peak_rss_mb: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


MODEL_URIS = ("models:/", "runs:/")


def tracking_uri_for(given: str | None) -> str:
    """``given``, else ``MLFLOW_TRACKING_URI``, else the ``mlflow.tracking_uri`` of the workflow's
    config/config.yaml in this folder (where `snakemake` ran)."""
    if given:
        return given
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    config = Path("config/config.yaml")
    if config.is_file():
        import yaml

        uri = (yaml.safe_load(config.read_text()) or {}).get("mlflow", {}).get("tracking_uri")
        if uri:
            return uri
    raise InputError("an MLflow model URI needs a tracking store: pass --tracking-uri (e.g. "
                     "sqlite:///results/mlflow/mlflow.db), set MLFLOW_TRACKING_URI, or run in the workflow's folder")


def resolve_model(model: str, tracking_uri: str | None, work: Path) -> Path:
    """A model given as a file, a model folder, or an MLflow URI (``models:/<name>@best``,
    ``runs:/<run id>/model``), as a local path (a URI's model downloaded into ``work``)."""
    if not str(model).startswith(MODEL_URIS):
        return Path(model)
    from . import tracking

    uri = tracking_uri_for(tracking_uri)
    db = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else None
    if db is not None and not Path(db).is_file():
        raise InputError(f"--model {model}: the tracking store {db} does not exist (run the workflow first, or pass "
                         f"--tracking-uri)")
    try:
        return tracking.download_model(str(model), uri, work)
    except LookupError as exc:
        raise InputError(f"--model {exc}") from None


def load_model(path: Path, device: str):
    """The checkpoint at ``path`` as a :class:`animote.predict.Predictor` on ``device``."""
    from .predict import Predictor
    from .train import resolve_device

    if not (path.is_file() or path.is_dir()):
        raise InputError(f"{path}: no such checkpoint; a trained model is results/train/<sweep>/<experiment>/"
                         f"model.pt or the folder results/models/<sweep>/<experiment> after `snakemake` has run")
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: torch sees no CUDA device here; use --device auto or cpu")
    try:
        return Predictor.load(path, resolve_device(device))
    except (ValueError, RuntimeError) as exc:
        raise InputError(str(exc)) from None


def load_backends(predictor, model: Path, device: str, backend_models: Mapping[str, str]):
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
            raise InputError(f"{model}: its {role} features need {spec['type']} model {spec.get('model')!r}, "
                             f"which is not available here: {exc} (or point to it: --backend-model "
                             f"{role}=FOLDER)") from None
        except (ValueError, KeyError) as exc:
            raise InputError(f"{model}: its {role} backend {spec.get('type')!r} cannot be used by this animote "
                             f"({exc}); retrain with a backend from features.backends") from None
        out[role] = backend
    return out


def choose_neutral(predictor, neutral: str | None) -> tuple[np.ndarray, str]:
    """The face at rest that the offsets move, and where it came from: a recording the model was
    trained on (default: its first), or a photograph's mesh brought to the model's scale."""
    if neutral is None:
        rec = sorted(predictor.checkpoint["neutral"])[0]
        return predictor.neutral(rec), f"recording {rec} (from the model)"
    if Path(neutral).is_file():
        import cv2

        from .mesh import neutral_from_image

        image = cv2.imread(neutral, cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"{neutral}: not an image OpenCV can read (png, jpg, ...)")
        try:
            mesh = neutral_from_image(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), predictor.neutral(), neutral)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        return mesh, f"image {neutral}"
    if neutral in predictor.checkpoint["neutral"]:
        return predictor.neutral(neutral), f"recording {neutral} (from the model)"
    raise InputError(f"--neutral {neutral}: no such image file, nor a recording the model was trained on "
                     f"({', '.join(sorted(predictor.checkpoint['neutral']))})")


def check_not_silent(raw: Path, n_samples: int, speech: Path, floor_dbfs: float = -60.0) -> float:
    """The peak level of the decoded audio in dBFS; silence is refused."""
    from .features import SAMPLE_RATE
    from .media import read_samples

    peak = 0.0
    step = SAMPLE_RATE * 60
    for s in range(0, n_samples, step):
        peak = max(peak, float(np.abs(read_samples(raw, s, step)).max(initial=0.0)))
    db = 20 * np.log10(max(peak, 1e-12))
    if db < floor_dbfs:
        raise InputError(f"{speech}: the audio is silent (peak {db:.0f} dBFS, below {floor_dbfs:.0f}): "
                         f"nothing to animate")
    return db


def block_features(raw: Path, n_samples: int, blocks, fps: float, backends, speech: Path,
                   timings: Timings) -> Iterator[dict[str, np.ndarray]]:
    """Each block's features per role, on its video frames, read from the decoded audio ``raw``."""
    from .features import SAMPLE_RATE, compute_features
    from .media import frame_to_sample, read_samples

    for a, b in blocks:
        with timings.phase("features"):
            s0, s1 = (int(v) for v in frame_to_sample(np.array([a, b]), fps, SAMPLE_RATE))
            audio = read_samples(raw, s0, min(s1, n_samples) - s0)
            audio = np.pad(audio, (0, s1 - s0 - len(audio)))  # the last frame's audio may run out
            block = {}
            for role, backend in backends.items():
                try:
                    block[role] = compute_features(audio, SAMPLE_RATE, backend, b - a, fps,
                                                   f"{speech} ({a / fps:.1f}-{b / fps:.1f} s)").frames
                except ValueError as exc:
                    raise InputError(str(exc)) from None
        yield block


def mesh_frames(pieces: Iterator[Mapping[str, np.ndarray]], neutral: np.ndarray, writers, model: Path,
                timings: Timings, on_frame=None, channels: dict[str, list] | None = None,
                bars: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, ...]]:
    """Predicted targets (``pieces``, as the predictor streams them): the offsets as meshes, each
    piece to every writer of ``writers``, then frame by frame to the video; each channel target's
    piece appended to its list in ``channels``; with ``bars`` (blendshape indices), each frame
    also carries those channels' values (the video's strip). Prediction time excludes the feature
    time spent inside it."""
    while True:
        t0, f0 = time.perf_counter(), timings.seconds["features"]
        try:
            piece = next(pieces, None)
        except ValueError as exc:  # features that do not fit the model (another backend's model given)
            raise InputError(f"{model}: {exc}") from None
        timings.seconds["prediction"] += time.perf_counter() - t0 - (timings.seconds["features"] - f0)
        if piece is None:
            return
        meshes = neutral + piece["offsets"]
        with timings.phase("export"):
            for w in writers:
                w.write(meshes)
            for t, parts in (channels or {}).items():
                parts.append(piece[t])
        strip = piece["blendshapes"][:, bars] if bars is not None else None
        for i, m in enumerate(meshes):
            yield (m,) if strip is None else (m, strip[i])
            if on_frame is not None:
                on_frame()


def strip_channels(predictor) -> tuple[tuple[str, ...], np.ndarray | None]:
    """The mouth channels the video's strip shows (those of the model's blendshapes) and their indices."""
    from .targets import mouth_columns

    if "blendshapes" not in predictor.targets:
        return (), None
    labels, cols = mouth_columns(predictor.channel_names("blendshapes"))
    return labels, np.array(cols, np.int64)


def _check_paths(speech: Path, out: Path | None, arkit: Path | None = None) -> Path:
    if not speech.is_file():
        raise InputError(f"{speech}: no such file")
    if arkit is not None and arkit.suffix.lower() not in (".csv", ".json"):
        raise InputError(f"--arkit {arkit}: write the ARKit curves as OUT.csv (Live Link Face) or OUT.json")
    out = out or Path(f"{speech.stem}_animote.mp4")
    if out.suffix.lower() != ".mp4":
        raise InputError(f"--out {out}: the video is written as mp4; name it OUT.mp4")
    if out.resolve() == speech.resolve():
        raise InputError(f"--out {out} is the speech file itself; choose another name")
    return out


def animate(speech: str | os.PathLike, model: str | os.PathLike, out: str | os.PathLike | None = None, *,
            neutral: str | None = None, obj_dir: str | os.PathLike | None = None, device: str = "auto",
            size: int = 512, block_seconds: float = 30.0, overlap: int | None = None,
            backend_models: Mapping[str, str] | None = None, on_frame=None,
            arkit: str | os.PathLike | None = None, tracking_uri: str | None = None) -> Animation:
    """Animate ``speech`` with the checkpoint ``model``: the video ``out`` (mp4), the meshes beside
    it (``.npz``, and the model's blendshapes and head pose), with ``obj_dir`` one OBJ per frame,
    with ``arkit`` the predicted blendshapes and head angles as a Live Link Face CSV (``.csv``) or
    a JSON (``.json``); each written under a temporary name and renamed when complete.
    ``on_frame(total)`` is called after each frame is drawn (a progress bar). Raises
    :class:`InputError` for bad input."""
    from .arkit import write_arkit_json, write_livelink_csv
    from .chunks import plan_chunks
    from .export import MeshSequenceWriter, ObjSequenceWriter
    from .features import SAMPLE_RATE
    from .media import decode_audio_file
    from .mesh import face_triangles
    from .render import Frame2D, render_video
    from .util import atomic_path

    t_start = time.perf_counter()
    speech, given = Path(speech), str(model)
    arkit = Path(arkit) if arkit else None
    out = _check_paths(speech, Path(out) if out else None, arkit)
    npz = out.with_suffix(".npz")
    downloads = tempfile.TemporaryDirectory(prefix="animote-model-")
    model = resolve_model(given, tracking_uri, Path(downloads.name))
    predictor = load_model(model, device)
    if arkit is not None and "blendshapes" not in predictor.targets:
        raise InputError(f"--arkit {arkit}: {model} predicts {', '.join(predictor.targets)}, no blendshapes; train one "
                         f"with train.targets: [offsets, blendshapes] on recordings tracked with mesh.tracker: landmarker")
    if overlap is not None:
        predictor.overlap = overlap
    backends = load_backends(predictor, model, predictor.device, backend_models or {})
    neutral_mesh, neutral_from = choose_neutral(predictor, neutral)
    fps, timings = predictor.fps, Timings()

    out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".animote-", dir=out.parent)))
        raw = work / "speech.f32"
        with timings.phase("decode"):
            try:
                n_samples = decode_audio_file(speech, raw, SAMPLE_RATE)
            except (ValueError, FileNotFoundError) as exc:
                raise InputError(str(exc)) from None
            peak_db = check_not_silent(raw, n_samples, speech)
        seconds = n_samples / SAMPLE_RATE
        n_frames = int(round(seconds * fps))
        if n_frames < 2:
            raise InputError(f"{speech}: {seconds * 1000:.0f} ms of audio is too short to animate")
        blocks = plan_chunks(n_frames, fps, block_seconds, min(10.0, block_seconds / 3))

        triangles = face_triangles()
        info = {"speech": speech.name, "model": given, "experiment": predictor.checkpoint.get("experiment"),
                "model_run_id": predictor.checkpoint.get("run_id"), "dataset_hash": predictor.checkpoint["dataset_hash"],
                "features": {r: predictor.features[r]["cache_key"] for r in predictor.roles},
                "neutral": neutral_from, "animote_version": __version__, "frames": n_frames, "fps": fps,
                "units": "isotropic MediaPipe coordinates (divided by the image width), x right, y down, "
                         "z away from the camera; pose-free"}
        writer = MeshSequenceWriter(stack.enter_context(atomic_path(npz)), n_frames, neutral_mesh, triangles, fps,
                                    info)
        stack.callback(writer.abort)
        writers = [writer]
        if obj_dir is not None:
            tmp_obj = stack.enter_context(atomic_path(obj_dir))
            tmp_obj.mkdir()
            writers.append(ObjSequenceWriter(tmp_obj, n_frames, triangles, f"animote: {speech.name}", fps))

        features = block_features(raw, n_samples, blocks, fps, backends, speech, timings)
        tick = (lambda: on_frame(n_frames)) if on_frame is not None else None
        channels = {t: [] for t in predictor.targets if t != "offsets"}
        labels, bars = strip_channels(predictor)
        frames = mesh_frames(predictor.stream(features, n_frames), neutral_mesh, writers, model, timings, tick,
                             channels, bars)
        t = time.perf_counter()
        written = render_video(frames, (speech.name,), Frame2D.around(neutral_mesh, size, margin=0.15), fps, out,
                               audio=speech, n_frames=n_frames, bars=labels)
        s = timings.seconds
        s["rendering"] = time.perf_counter() - t - s["features"] - s["prediction"] - s["export"]
        if written != n_frames:
            raise RuntimeError(f"{written} frames rendered, {n_frames} expected")
        with timings.phase("export"):
            curves = {t: np.concatenate(parts) for t, parts in channels.items()}
            if "blendshapes" in curves:
                curves["blendshapes"] = np.clip(curves["blendshapes"], 0.0, 1.0)  # scores, as the tracker's
            for t, values in curves.items():
                writer.add(t, values.astype(np.float32))
                writer.add(f"{t}_names", np.array(predictor.channel_names(t)))
            writer.close()
            if arkit is not None:
                head = curves["head_pose"][:, :3] if "head_pose" in curves else None
                names = predictor.channel_names("blendshapes")
                if arkit.suffix.lower() == ".csv":
                    write_livelink_csv(arkit, curves["blendshapes"], fps, names, head_deg=head)
                else:
                    write_arkit_json(arkit, curves["blendshapes"], fps, names, head_deg=head,
                                     info={"speech": speech.name, "model": given})
    downloads.cleanup()
    total = time.perf_counter() - t_start
    return Animation(video=str(out), meshes=str(npz), obj_dir=str(obj_dir) if obj_dir is not None else None,
                     arkit=str(arkit) if arkit is not None else None, targets=predictor.targets,
                     frames=n_frames, fps=fps, audio_seconds=seconds, peak_dbfs=peak_db, blocks=len(blocks),
                     seconds=dict(timings.seconds, total=total), real_time_factor=seconds / total,
                     peak_rss_mb=peak_rss_mb())
