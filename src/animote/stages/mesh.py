"""The face mesh half of the DAG, on file paths: landmarks per chunk (rule ``face_mesh``), then
the neutral mesh, head pose removed and the summary (rule ``align_mesh``). One function per rule,
named like it (:mod:`animote.stages`)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from .. import RecordingError
from ..chunks import find_chunk, iter_chunk_frames, load_chunks
from ..media import ProbeInfo, frame_to_sample, iter_frames, read_wav
from ..mesh import (
    NeutralParams,
    TrackParams,
    decode_size,
    landmarks_of_image,
    lip_gap,
    neutral_from_frames,
    quiet_frames,
    remove_pose,
    to_isotropic,
    track_frames,
)
from ..render import mesh_preview
from ..store import array_names, read_store, stores_in, write_store
from ..util import atomic_path, remove_path
from ..workers import run_chunks

log = logging.getLogger(__name__)


def mesh_chunk(chunk_dir: str | Path, chunk_id: str, probe_json: str | Path, out_store: str | Path, *,
               params: TrackParams, source_key: str = "") -> dict:
    """Landmarks for every frame of one chunk, streamed from the video, into a Zarr store.
    ``source_key`` is recorded with it (see ``mesh_recording``)."""
    import mediapipe

    chunk = find_chunk(chunk_dir, chunk_id)
    info = ProbeInfo.load(probe_json)
    size = decode_size(info.width, info.height, params.max_side)
    name = f"recording '{chunk.recording}' chunk {chunk.chunk}"
    log.info("%s: tracking %d frames decoded at %dx%d", name, chunk.n_frames, *size)
    frames = iter_chunk_frames(chunk, info, size=size, threads=params.decode_threads)
    landmarks, found, timing, extras = track_frames(frames, chunk.n_frames, params, name)
    share = float(found.mean())
    if not found.any():
        log.warning("%s: no face in any of its %d frames; every frame is marked", name, chunk.n_frames)
    elif share < 1:
        log.info("%s: no face in %d of %d frames (marked)", name, int((~found).sum()), chunk.n_frames)
    attrs = {"recording": chunk.recording, "chunk": chunk.chunk, "fps": chunk.fps, "n_frames": chunk.n_frames,
             "clean_start": chunk.clean_start, "clean_end": chunk.clean_end, "raw_start": chunk.raw_start,
             "raw_end": chunk.raw_end, "segments": [list(s) for s in chunk.segments],
             "width": info.width, "height": info.height, "decode_width": size[0], "decode_height": size[1],
             "coordinates": "mediapipe normalised (x/width, y/height, z)", "mediapipe_version": mediapipe.__version__,
             "face_found_share": share, "ms_per_frame": 1000 * timing["seconds_total"] / max(1, chunk.n_frames),
             "ms_per_frame_model": 1000 * timing["seconds_model"] / max(1, chunk.n_frames),
             "source_key": source_key, "tracker": params.tracker}
    if "blendshapes" in extras:
        from ..landmarker import BLENDSHAPES

        attrs["blendshape_names"] = list(BLENDSHAPES)
    write_store(out_store, {"landmarks": landmarks, "face_found": found, **extras}, attrs)
    log.info("%s: %d frames, face in %.1f%%, %.2f ms/frame (model %.2f)", name, chunk.n_frames, 100 * share,
             attrs["ms_per_frame"], attrs["ms_per_frame_model"])
    return attrs


def chunk_source_key(chunk, info: ProbeInfo, params: TrackParams, code: str = "") -> str:
    """What a chunk's landmarks depend on, hashed: the tracking parameters, the library code's
    version, the chunk's frames (video file, size and time stamp, frame ranges) and the frame size."""
    video = Path(chunk.video).resolve()
    st = video.stat()
    blob = json.dumps({"params": asdict(params), "code": code, "video": [str(video), st.st_size, st.st_mtime_ns],
                       "segments": [list(s) for s in chunk.segments], "n_frames": chunk.n_frames, "fps": chunk.fps,
                       "size": [info.width, info.height]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def mesh_chunk_task(chunk_dir: str, chunk_id: str, probe_json: str, out_store: str, *, params: dict,
                    source_key: str) -> dict:
    """``mesh_chunk`` with plain arguments, as a worker process runs it (animote.workers)."""
    return mesh_chunk(chunk_dir, chunk_id, probe_json, out_store, params=TrackParams(**params), source_key=source_key)


def face_mesh(*, input, output, params, threads, **_) -> list[dict]:
    """Rule ``face_mesh``: :func:`mesh_recording` over ``input.chunks`` with the tracker
    ``params.tracker``, ``threads`` chunks at once, resumable under the stage's code hash
    (``params.code``)."""
    return mesh_recording(input.chunks, input.info, output[0], TrackParams(**params.mesh, tracker=params.tracker),
                          workers=threads, code=params.code)


def mesh_recording(chunk_dir: str | Path, probe_json: str | Path, out_dir: str | Path, params: TrackParams, *,
                   workers: int = 1, code: str = "") -> list[dict]:
    """Landmarks for every chunk of a recording: a folder with a store per chunk (``cNNN.zarr``).

    ``workers`` chunks are tracked at once, each worker a fresh process of its own (with its own
    ffmpeg decoder; ``animote.workers``) that loads MediaPipe once and then takes chunk after chunk:
    per chunk, a process would spend seconds starting up for ten or twenty seconds of tracking.
    With one worker the chunks are tracked in this process. Every chunk is tracked from its first
    frame by a fresh tracker, exactly as on its own.

    The stores are written into ``<out_dir>.partial`` and the folder is renamed to ``out_dir`` when
    every chunk is done, so nothing half-done looks finished. A run that is killed or fails keeps
    the chunks it finished there: the next run reuses each one whose source key (``code``, the
    parameters, the video and the chunk's frames: ``chunk_source_key``) is unchanged and tracks
    the rest. A failed chunk ends the job with an error that names it, after the chunks already
    running are done."""
    chunk_dir, out_dir = Path(chunk_dir), Path(out_dir)
    chunks = load_chunks(chunk_dir)
    if not chunks:
        raise ValueError(f"{chunk_dir}: no chunks in the manifest")
    recording = chunks[0].recording
    info = ProbeInfo.load(probe_json)
    partial = out_dir.with_name(out_dir.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    wanted = {f"{c.chunk}.zarr" for c in chunks}
    for other in partial.iterdir():
        if other.name not in wanted:  # a chunk no longer in the manifest, or a killed writer's temporary
            remove_path(other)
    keys = {c.chunk: chunk_source_key(c, info, params, code) for c in chunks}
    done, todo = {}, []
    for c in chunks:
        store = partial / f"{c.chunk}.zarr"
        if store.exists():
            attrs = read_store(store, "face_found")[1]
            if attrs.get("source_key") == keys[c.chunk]:
                done[c.chunk] = attrs
                continue
            remove_path(store)
        todo.append(c)
    if done:
        log.info("recording '%s': %d of %d chunks kept from an interrupted run (%s)", recording, len(done),
                 len(chunks), ", ".join(sorted(done)))
    # longest first, so that the longest chunk (the last, when a short tail joined it) does not
    # start last while the other workers sit idle
    todo.sort(key=lambda c: -c.n_frames)
    workers = max(1, min(workers, len(todo)))
    log.info("recording '%s': tracking %d chunks, %d at a time", recording, len(todo), workers)
    tasks = [dict(chunk_dir=str(chunk_dir), chunk_id=c.chunk, probe_json=str(probe_json),
                  out_store=str(partial / f"{c.chunk}.zarr"), params=asdict(params), source_key=keys[c.chunk])
             for c in todo]
    results = run_chunks("animote.stages.mesh:mesh_chunk_task", tasks, workers, recording, "chunks to track",
                         kept=str(partial))
    done.update((task["chunk_id"], attrs) for task, attrs in zip(tasks, results))
    if out_dir.exists():
        remove_path(out_dir)
    os.replace(partial, out_dir)
    frames = sum(a["n_frames"] for a in done.values())
    log.info("recording '%s': landmarks for %d chunks, %d frames, %.2f ms per frame per worker", recording,
             len(done), frames, sum(a["ms_per_frame"] * a["n_frames"] for a in done.values()) / max(1, frames))
    return [done[c.chunk] for c in chunks]


def _frame_energy(wav: str | Path, n_frames: int, fps: float) -> np.ndarray:
    audio, sr = read_wav(wav)
    bounds = frame_to_sample(np.arange(n_frames + 1), fps, sr)
    sq = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    return (sq[bounds[1:]] - sq[bounds[:-1]]) / np.maximum(np.diff(bounds), 1)


def neutral_mesh(recording: str, mesh_stores, chunk_dir: str | Path, *, neutral_image: str | None,
                 out_store: str | Path, params: NeutralParams, max_frames: int = 3000) -> str:
    """The recording's neutral mesh (isotropic), from its reference image when the sheet names
    one, else from the recording's quiet frames. Refuses a recording whose face is missing too
    often. Returns a description of the source used."""
    chunks = {c.chunk: c for c in load_chunks(chunk_dir)}
    mesh_stores = stores_in(mesh_stores)
    founds, metas = [], []
    for store in mesh_stores:
        arrays, attrs = read_store(store, "face_found")
        founds.append(arrays["face_found"])
        metas.append(attrs)
    missing_chunks = sorted(set(chunks) - {m["chunk"] for m in metas})
    if missing_chunks:
        raise RecordingError(recording, f"no landmarks for chunks {', '.join(missing_chunks)}")
    found_all = np.concatenate(founds)
    missing = 1 - float(found_all.mean())
    if missing > params.max_missing_share:
        raise RecordingError(recording, f"no face in {100 * missing:.1f}% of its {len(found_all)} frames "
                                        f"(mesh.neutral.max_missing_share allows {100 * params.max_missing_share:.0f}%)")
    if neutral_image:
        image = cv2.imread(str(neutral_image), cv2.IMREAD_COLOR)
        if image is None:
            raise RecordingError(recording, f"cannot read the neutral image {neutral_image}")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        lm = landmarks_of_image(image)
        if lm is None:
            raise RecordingError(recording, f"MediaPipe finds no face in the neutral image {neutral_image}")
        neutral = to_isotropic(lm, image.shape[1], image.shape[0]).astype(np.float32)
        source, used = f"reference image {Path(neutral_image).name}", 1
    else:
        energy = np.concatenate([_frame_energy(chunks[m["chunk"]].audio, m["n_frames"], m["fps"]) for m in metas])
        idx = quiet_frames(found_all, energy, params.silence_quantile, max_frames)
        offsets = np.cumsum([0] + [len(f) for f in founds])
        meshes = []
        for k, (store, meta) in enumerate(zip(mesh_stores, metas)):
            local = idx[(idx >= offsets[k]) & (idx < offsets[k + 1])] - offsets[k]
            if len(local):
                lm = read_store(store, "landmarks")[0]["landmarks"][local]
                meshes.append(to_isotropic(lm, meta["width"], meta["height"]))
        neutral = neutral_from_frames(np.concatenate(meshes), np.arange(len(idx)))
        source, used = f"recording, median of {len(idx)} quiet frames", len(idx)
    log.info("recording '%s': neutral mesh from the %s", recording, source)
    write_store(out_store, {"neutral": neutral}, {"recording": recording, "source": source, "frames_used": used,
                                                  "face_missing_share": missing,
                                                  "coordinates": "isotropic (every axis / image width)"})
    return source


def align_chunk(mesh_store: str | Path, neutral_store: str | Path, out_store: str | Path) -> dict:
    """Remove head pose from a chunk's meshes: aligned meshes, per-frame pose and residual."""
    arrays, attrs = read_store(mesh_store)
    neutral, n_attrs = read_store(neutral_store, "neutral")
    iso = to_isotropic(arrays["landmarks"], attrs["width"], attrs["height"])
    aligned, pose, residual = remove_pose(iso, arrays["face_found"], neutral["neutral"])
    out_attrs = dict(attrs, neutral_source=n_attrs["source"], coordinates="isotropic, neutral mesh frame",
                     residual_median=float(np.nanmedian(residual)) if np.isfinite(residual).any() else None)
    tracked = {k: arrays[k] for k in ("blendshapes", "transform", "iris") if k in arrays}  # the landmarker's
    write_store(out_store, {"aligned": aligned, "pose": pose, "residual": residual,
                            "face_found": arrays["face_found"], **tracked}, out_attrs)
    return out_attrs


def align_recording(mesh_stores: list, neutral_store: str | Path, out_dir: str | Path) -> list[dict]:
    """Head pose removed from every chunk of a recording: a folder with a store per chunk (named as
    its mesh store), written under a temporary name and renamed when all are done. One process
    for the recording: per chunk, start-up would take longer than the fit."""
    done = []
    with atomic_path(out_dir) as tmp:
        Path(tmp).mkdir(parents=True)
        for store in stores_in(mesh_stores):
            done.append(align_chunk(store, neutral_store, Path(tmp) / Path(store).name))
    if done:
        log.info("recording '%s': head pose removed from %d chunks, residual median %s", done[0]["recording"],
                 len(done), ", ".join(f"{a['chunk']} {a['residual_median']:.2e}" if a["residual_median"] is not None
                                      else f"{a['chunk']} -" for a in done))
    return done


STILL = 0.02  # a blendshape channel whose score moves less than this (std over a chunk) is reported still


def _blendshape_quality(blendshapes: np.ndarray | None, found: np.ndarray) -> dict:
    """With the landmarker's blendshape scores (frames, 52): how many channels move (std >= STILL
    over the chunk's faces), which do not, and jawOpen's range. Nothing without them (FaceMesh)."""
    if blendshapes is None or not found.any():
        return {}
    from ..landmarker import BLENDSHAPES

    scores = blendshapes[found]
    std = scores.std(axis=0)
    still = [n for n, s in zip(BLENDSHAPES, std) if n != "_neutral" and s < STILL]
    jaw = scores[:, BLENDSHAPES.index("jawOpen")]
    return {"blendshapes_moving": len(BLENDSHAPES) - 1 - len(still), "blendshapes_still": ";".join(still),
            "jaw_open_p5": float(np.percentile(jaw, 5)), "jaw_open_p95": float(np.percentile(jaw, 95))}


def mesh_report(recording: str, mesh_stores: list, aligned_stores: list, neutral_store: str | Path,
                chunk_dir: str | Path, *, probe_json: str | Path, out_tsv: str | Path,
                out_png: str | Path) -> pd.DataFrame:
    """Per-chunk summary (frames, face share, pose residual, lip gap range; with the landmarker
    the blendshape channels that move and those that stay still) and the picture."""
    rows, first = [], None
    mesh_stores, aligned_stores = stores_in(mesh_stores), stores_in(aligned_stores)
    if [Path(p).name for p in mesh_stores] != [Path(p).name for p in aligned_stores]:
        raise RecordingError(recording, f"aligned stores {[Path(p).name for p in aligned_stores]} do not match the "
                                        f"mesh stores {[Path(p).name for p in mesh_stores]}")
    for mesh_store, store in zip(mesh_stores, aligned_stores):
        tracked = [n for n in ("blendshapes",) if n in array_names(store)]  # the landmarker's
        arrays, attrs = read_store(store, "aligned", "residual", "face_found", *tracked)
        found = arrays["face_found"]
        gap = lip_gap(arrays["aligned"][found]) if found.any() else np.array([np.nan])
        rows.append({"recording": recording, "chunk": attrs["chunk"], "frames": attrs["n_frames"],
                     "face_found_share": float(found.mean()),
                     "residual_median": float(np.nanmedian(arrays["residual"])) if found.any() else np.nan,
                     "residual_max": float(np.nanmax(arrays["residual"])) if found.any() else np.nan,
                     "lip_gap_min": float(np.nanmin(gap)), "lip_gap_max": float(np.nanmax(gap)),
                     "ms_per_frame": attrs["ms_per_frame"], **_blendshape_quality(arrays.get("blendshapes"), found)})
        if first is None and found.any():
            first = (attrs["chunk"], int(np.flatnonzero(found)[len(np.flatnonzero(found)) // 2]), mesh_store)
    df = pd.DataFrame(rows)
    with atomic_path(out_tsv) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.5f")
    info = ProbeInfo.load(probe_json)
    neutral, n_attrs = read_store(neutral_store, "neutral")
    chunks = {c.chunk: c for c in load_chunks(chunk_dir)}
    frame, lm = np.zeros((info.height, info.width, 3), np.uint8), None
    if first is not None:
        chunk = chunks[first[0]]
        raw = int(chunk.raw_frames[first[1]])
        frame = next(iter_frames(chunk.video, raw, 1, info)).copy()
        lm = read_store(first[2], "landmarks")[0]["landmarks"][first[1]]
    mesh_preview(out_png, frame, lm, neutral["neutral"], f"{recording} {first[0] if first else ''}",
                   n_attrs["source"])
    return df


def align_mesh(*, input, output, params, wildcards, **_) -> pd.DataFrame:
    """Rule ``align_mesh``, what follows the landmarks, in one process: the neutral mesh
    (:func:`neutral_mesh`; from ``params.image`` when the sheet names one), head pose removed from
    every chunk (:func:`align_recording`), and the summary with its picture (:func:`mesh_report`).
    Each takes about as long as a job's start-up."""
    recording, meshes = wildcards.rec, input.meshes
    neutral_mesh(recording, meshes, input.chunks, neutral_image=params.image, out_store=output.neutral,
                 params=NeutralParams(**params.mesh))
    align_recording(meshes, output.neutral, output.aligned)
    return mesh_report(recording, meshes, output.aligned, output.neutral, input.chunks, probe_json=input.info,
                       out_tsv=output.summary, out_png=output.preview)
