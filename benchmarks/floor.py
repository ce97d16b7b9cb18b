"""The floor of preprocessing on this machine: bare loops with nothing of the workflow around them.

One process per core, all at once, each pinned with its ffmpeg decoder to its own CPU: decode +
FaceMesh over a chunk's frames (as the landmark stage decodes them: scaled in the decoder), then,
if asked, the feature backends on audio already in memory. ``floor(...)`` returns the mean per
core; benchmarks/scale.py and benchmarks/cores.py compare the stage with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LOOP = r"""
import json, os, sys, time
from pathlib import Path
chunks_dir, probe_json, seconds, cpu, index, config = sys.argv[1:7]
os.sched_setaffinity(0, {int(cpu)})  # this process, its ffmpeg decoder and every thread on one CPU
from animote.chunks import load_chunks, iter_chunk_frames
from animote.config import load
from animote.media import ProbeInfo, read_wav
from animote.mesh import TrackParams, decode_size
import mediapipe as mp
cfg = load(config)
params = TrackParams.from_config(cfg)
chunks = load_chunks(chunks_dir)
chunk = chunks[int(index) % len(chunks)]
info = ProbeInfo.load(probe_json)
size = decode_size(info.width, info.height, params.max_side)
fm = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1)
t = time.perf_counter()
n = 0
for f in iter_chunk_frames(chunk, info, size=size, threads=params.decode_threads):
    fm.process(f)
    n += 1
    if n >= int(float(seconds) * chunk.fps):
        break
out = {"mesh_ms_per_frame": 1000 * (time.perf_counter() - t) / n, "frames": n, "feature_rtf": {}}
if os.environ.get("FLOOR_FEATURES") == "1":
    from animote.features import active_specs, make_backend
    audio, sr = read_wav(chunk.audio)
    audio = audio[: int(float(seconds) * sr)]
    for role, (_, spec) in active_specs(cfg["features"]).items():
        name = cfg["features"][role]
        backend = make_backend(dict(spec, device="cpu"))
        backend.compute(audio[: sr])  # the model loaded, its first call made
        t = time.perf_counter()
        backend.compute(audio)
        out["feature_rtf"][name] = (time.perf_counter() - t) / (len(audio) / sr)
print(json.dumps(out))
"""


def floor(chunks_dir: Path, probe_json: Path, config: Path, cores: int, seconds: float = 30,
          features: bool = True) -> dict:
    """The bare loop on ``cores`` CPUs at once, one process pinned to each, each on its own chunk:
    mean ms per frame (decode + FaceMesh) and real-time factor per feature backend."""
    cpus = sorted(os.sched_getaffinity(0))
    env = dict(os.environ, FLOOR_FEATURES="1" if features else "0")
    procs = [subprocess.Popen([sys.executable, "-c", LOOP, str(chunks_dir), str(probe_json), str(seconds),
                               str(cpus[i % len(cpus)]), str(i), str(config)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(cores)]
    runs = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"floor loop failed: {err[-2000:]}")
        runs.append(json.loads(out.strip().splitlines()[-1]))
    return {"mesh_ms_per_frame": sum(r["mesh_ms_per_frame"] for r in runs) / cores,
            "feature_rtf": {k: sum(r["feature_rtf"][k] for r in runs) / cores for k in runs[0]["feature_rtf"]}}
