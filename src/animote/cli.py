"""The ``animote`` command: arguments in, one line per result out.

``animote animate SPEECH --model MODEL.pt``: a trained model turns new speech into a face mesh
video (mp4, the speech muxed in), the mesh sequence (``.npz``) and, with ``--obj DIR``, one OBJ
per frame. The work is :func:`animote.animate.animate`.

``animote arkit results/<rec>/mesh --out take.csv``: a recording's tracked ARKit curves (the
landmarker's) as a Live Link Face CSV or a JSON (:func:`animote.arkit.export_tracked`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__


def _progress(enabled: bool):
    """A progress bar on stderr and the callback that moves it (``on_frame(total)``)."""
    from tqdm import tqdm

    bar = tqdm(unit="frame", desc="animate", disable=not enabled, file=sys.stderr, mininterval=0.5,
               dynamic_ncols=True)

    def tick(total: int) -> None:
        bar.total = total
        bar.update(1)

    return bar, tick


def _backend_model(text: str) -> tuple[str, str]:
    from .features import ROLES

    role, sep, path = text.partition("=")
    if not sep or role not in ROLES or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: give ROLE=FOLDER with ROLE one of {', '.join(ROLES)}")
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
        epilog="Example: animote animate hello.wav --model results/train/default/recipe/model.pt "
               "--out hello.mp4 --obj hello_obj")
    a.add_argument("speech", metavar="SPEECH",
                   help="audio to animate: anything ffmpeg reads (wav, mp3, m4a, flac, or a video's audio track), "
                        "any sample rate, mono or stereo")
    a.add_argument("--model", required=True, metavar="MODEL",
                   help="a checkpoint written by the workflow's training (results/train/<sweep>/<experiment>/"
                        "model.pt), a model folder (results/models/<sweep>/<experiment>, or one shared with you), or "
                        "an MLflow model: models:/<name>@best (the sweep's best by validation loss), "
                        "models:/<name>/<version>, runs:/<run id>/model; it names the feature backends, fps and "
                        "neutral meshes it needs")
    a.add_argument("--tracking-uri", metavar="URI",
                   help="the MLflow store of a models:/ or runs:/ model (default: MLFLOW_TRACKING_URI, or the "
                        "mlflow.tracking_uri of config/config.yaml in this folder)")
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
    a.add_argument("--arkit", metavar="OUT.csv|OUT.json",
                   help="also write the predicted ARKit blendshapes (and head angles, when the model predicts head "
                        "pose) as the CSV Epic's Live Link Face app records, which Unreal's importer reads (name it "
                        "<slate>_<take>_<subject>.csv), or as a plain JSON; the model must predict blendshapes "
                        "(train.targets: [offsets, blendshapes])")
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
    k = sub.add_parser(
        "arkit", help="a recording's tracked ARKit blendshapes and head pose as a Live Link Face CSV or JSON",
        description="Write the blendshape curves and head rotation that the Face Landmarker tracked in a recording "
                    "(mesh.tracker: landmarker) as the CSV Epic's Live Link Face app records (Unreal's Live Link "
                    "Face importer, Blender add-ons read it) or as a plain JSON. Frames are the cleaned recording's "
                    "(claps cut).",
        epilog="Example: animote arkit results/demo/mesh --out demo_take1_me.csv")
    k.add_argument("mesh", metavar="MESH_DIR", help="a recording's landmark folder, results/<recording>/mesh")
    k.add_argument("--out", required=True, metavar="OUT.csv|OUT.json",
                   help="the file to write; a CSV named <slate>_<take>_<subject>.csv gives Unreal its subject")
    k.add_argument("--traceback", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging, for --neutral IMAGE
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = parser().parse_args(argv)
    if args.command is None:
        parser().print_help()
        return 2
    if args.command == "arkit":
        return _arkit(args)
    from .animate import InputError, animate
    from .features import ModelUnavailable

    bar = None
    try:
        if args.size < 64 or args.size % 2:
            raise InputError(f"--size {args.size}: give an even number of pixels, 64 or more")
        if args.block_seconds < 5:
            raise InputError(f"--block-seconds {args.block_seconds}: give 5 seconds or more")
        bar, tick = _progress(sys.stderr.isatty() and not args.no_progress)
        r = animate(args.speech, args.model, args.out, neutral=args.neutral, obj_dir=args.obj, device=args.device,
                    size=args.size, block_seconds=args.block_seconds, overlap=args.overlap,
                    backend_models=dict(args.backend_model), on_frame=tick, arkit=args.arkit,
                    tracking_uri=args.tracking_uri).to_dict()
    except (InputError, ModelUnavailable) as exc:
        if args.traceback:
            raise
        print(f"animote: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    s = r["seconds"]
    obj = f", {r['frames']} OBJs in {r['obj_dir']}/" if r["obj_dir"] else ""
    obj += f", the ARKit curves in {r['arkit']}" if r["arkit"] else ""
    print(f"animote: wrote {r['video']} ({r['frames']} frames, {r['audio_seconds']:.1f} s at {r['fps']:g} fps), "
          f"{r['meshes']}{obj}")
    print(f"animote: {r['real_time_factor']:.1f}x real time: decode {s['decode']:.1f} s, features "
          f"{s['features']:.1f} s, prediction {s['prediction']:.1f} s, rendering {s['rendering']:.1f} s, files "
          f"{s['export']:.1f} s; peak memory {r['peak_rss_mb']:.0f} MB")
    return 0


def _arkit(args) -> int:
    from .arkit import export_tracked

    try:
        r = export_tracked(args.mesh, args.out)
    except (ValueError, FileNotFoundError) as exc:
        if args.traceback:
            raise
        print(f"animote: error: {exc}", file=sys.stderr)
        return 2
    faceless = f", {r['no_face']} without a face (zeros)" if r["no_face"] else ""
    print(f"animote: wrote {r['out']} ({r['frames']} frames at {r['fps']:g} fps from {r['chunks']} chunks{faceless})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
