"""`animote animate` speed and memory: real-time factor split into features, prediction and
rendering, and peak memory, for speech of several lengths.

    .venv/bin/python benchmarks/animate.py                      # the demo's model, 1 and 10 minutes
    .venv/bin/python benchmarks/animate.py --model results/train/default/recipe/model.pt --minutes 1 10 --size 512

The speech is the demo recording's clean audio (results/demo/clean.wav, written by the default
run) repeated to each length, as 44.1 kHz stereo FLAC, as a user might give it. Each length runs in
a fresh process (``animote.animate.animate``, the command's own function), so the peak memory of one
does not hide in another's; "start-up" is the process's imports, the model and the backends'
loading, everything before the first sample is decoded. Real-time factor: audio seconds per
second of wall time, start-up included ("total") and not ("steady").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from animote.animate import animate
r = animate(sys.argv[1], sys.argv[2], sys.argv[3], size=int(sys.argv[4]), device=sys.argv[5]).to_dict()
r["process_seconds"] = time.perf_counter() - t0
print(json.dumps(r))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="results/train/default/recipe/model.pt")
    ap.add_argument("--speech", default="results/demo/clean.wav", help="audio repeated to each length")
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    audio, sr = sf.read(args.speech, dtype="float32")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            n = int(minutes * 60 * sr)
            clip = np.tile(audio, int(np.ceil(n / len(audio))))[:n]
            speech = Path(tmp) / f"speech_{minutes:g}min.flac"
            sf.write(speech, np.stack([clip, clip], 1), sr)  # stereo
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(speech), "-ar", "44100", str(speech) + ".flac"],
                           check=True)
            out = subprocess.run([sys.executable, "-c", CHILD, str(speech) + ".flac", args.model,
                                  str(Path(tmp) / "out.mp4"), str(args.size), args.device],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(out.stderr[-2000:])
            r = json.loads(out.stdout.strip().splitlines()[-1])
            s = r["seconds"]
            steady = sum(s[k] for k in ("decode", "features", "prediction", "rendering", "export"))
            startup = r["process_seconds"] - steady  # imports, model and backends loaded
            rows.append((minutes, r, startup, steady))
    print(f"animate on {args.model}, video {args.size}x{args.size}, device {args.device}")
    print("| audio | frames | start-up s | decode s | features s | prediction s | rendering s | files s | "
          "total s | RTF total | RTF steady | features RTF | render ms/frame | peak RSS MB |")
    print("|" + " --- |" * 14)
    for minutes, r, startup, steady in rows:
        s, secs = r["seconds"], r["audio_seconds"]
        print(f"| {minutes:g} min | {r['frames']} | {startup:.1f} | {s['decode']:.1f} | {s['features']:.1f} | "
              f"{s['prediction']:.1f} | {s['rendering']:.1f} | {s['export']:.1f} | {r['process_seconds']:.1f} | "
              f"{secs / r['process_seconds']:.1f}x | {secs / steady:.1f}x | {secs / s['features']:.0f}x | "
              f"{1000 * s['rendering'] / r['frames']:.2f} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
