"""Learning curve: the network against ridge and the mean as training speech grows.

    .venv/bin/python benchmarks/learning_curve.py                       # 2.5, 5, 10, 20 min on this machine
    .venv/bin/python benchmarks/learning_curve.py --minutes 2.5 5 10 20 40 60 --device cuda   # on a GPU

Builds demo recordings with disjoint text (``demo.sentence_offset``): training takes read by the
voices ``--voices`` (their minutes add up to each size of ``--minutes``), and two held-out test
recordings, the same for every size: new sentences by the training voices (``heldout_text``) and
new sentences by a voice never trained on (``heldout_voice``, ``--test-voice``). Each size runs
the workflow's preprocessing and dataset stage over its takes and the two test recordings (held out
whole: ``dataset.test_recordings``; validation chunks come from the takes), then trains the
experiments of ``--experiments`` (the default sweep's, the config's recipe), fits ridge (context
and alpha chosen on validation) and the mean, and scores every model on each test recording by
the evaluation code, with 95 % bootstrap intervals over test windows. The test split chooses
nothing.

With ``--tracker landmarker`` the recordings are tracked by MediaPipe's Face Landmarker, and the
experiments that predict blendshapes (``train.targets``, e.g. ``--sweep config/sweeps/arkit.yaml
--experiments blendshapes``) are scored on them too beside ridge and the mean of the same targets
(blendshape R² overall and per group, jawOpen's r and lag, with intervals over the same windows);
``--rerun-triggers mtime`` reuses recordings preprocessed by an older version of the code.

Prints one table per test recording and writes ``learning_curve.tsv`` and ``learning_curve.png``
(test R² on offsets, LVE and lip-sync r against minutes) into ``--work``. Preprocessed recordings
are kept there, so a rerun with more sizes only adds the new takes.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
TEST_RECORDINGS = ("heldout_text", "heldout_voice")
TEST_MINUTES = 5.0
LADDER = (2.5, 5.0, 10.0, 20.0, 40.0)


def takes_plan(minutes: list[float], voices: list[str], test_voice: str, config: dict) -> list[dict]:
    """Training takes (one per step of ``minutes``) and the two test recordings, each with a
    sentence offset past every earlier one's planned sentences."""
    from animote.demo import DemoParams
    from animote.demo.speech import sentences

    n_table = len(sentences())
    plan, offset, steps = [], 0, []
    # the test recordings read the sentences at the end of the table, the takes those from its start
    tests = [("heldout_text", TEST_MINUTES, voices), ("heldout_voice", TEST_MINUTES, [test_voice])]
    for i, m in enumerate(minutes):  # take i brings the training speech from minutes[i - 1] to m
        steps.append(("take", m - (minutes[i - 1] if i else 0.0), voices))
    for name, mins, vs in tests + steps:
        demo = {**config["demo"], "duration_s": mins * 60, "voices": list(vs), "sentence_offset": offset,
                "seed": config["demo"]["seed"] + len(plan)}
        rows, _, _ = DemoParams.from_config({"demo": demo}).plan(n_table)
        if name == "take":  # named by what it holds, so a cached take is never another's
            name = f"take_{offset:04d}_{mins:g}min_{'-'.join(vs)}"
        plan.append({"name": name, "minutes": mins, "demo": demo})
        offset = rows.stop
    if offset > n_table:
        raise SystemExit(f"{sum(p['minutes'] for p in plan):g} minutes need more sentences than the table's {n_table}")
    return plan


def make_takes(work: Path, plan: list[dict]) -> None:
    from animote.demo import DemoParams, make_demo

    for p in plan:
        folder = work / "takes"
        folder.mkdir(parents=True, exist_ok=True)
        video = folder / f"{p['name']}.mp4"
        if video.exists():
            continue
        t0 = time.perf_counter()
        make_demo(video, folder / f"{p['name']}.truth.tsv", folder / f"{p['name']}.events.json",
                  DemoParams.from_config({"demo": p["demo"]}))
        print(f"  {p['name']}: {p['minutes']:g} min, voices {','.join(p['demo']['voices'])}, sentences from "
              f"{p['demo']['sentence_offset']}: made in {time.perf_counter() - t0:.0f} s", flush=True)


def prepare(work: Path, plan: list[dict], n_takes: int, cores: int, tracker: str = "facemesh",
            rerun_triggers: str | None = None) -> Path:
    """The dataset of the first ``n_takes`` takes and the test recordings (the workflow's own
    preprocessing and dataset stage, the meshes by ``tracker``); returns its copy under
    ``work/datasets``."""
    takes = [p["name"] for p in plan if p["name"] not in TEST_RECORDINGS][:n_takes]
    names = takes + list(TEST_RECORDINGS)
    out = work / "datasets" / f"{takes[-1]}{'' if tracker == 'facemesh' else '_' + tracker}.zarr"
    if out.exists():
        return out
    (work / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "config" / "config.yaml", work / "config" / "config.yaml")
    (work / "config" / "recordings.tsv").write_text(
        "id\tpath\tneutral\n" + "".join(f"{n}\ttakes/{n}.mp4\t\n" for n in names))
    (work / "curve.yaml").write_text(yaml.safe_dump({"dataset": {
        "split": {"train": 0.85, "validation": 0.15, "test": 0.0}, "test_recordings": list(TEST_RECORDINGS)},
        "mesh": {"tracker": tracker}}))
    t0 = time.perf_counter()
    triggers = ["--rerun-triggers", rerun_triggers] if rerun_triggers else []
    subprocess.run([str(Path(sys.executable).parent / "snakemake"), "results/dataset/dataset.zarr", "-s",
                    str(REPO / "workflow" / "Snakefile"), "--cores", str(cores), "--quiet", "all", *triggers,
                    "--configfile", "curve.yaml"], cwd=work, check=True)
    out.parent.mkdir(exist_ok=True)
    shutil.copytree(work / "results" / "dataset" / "dataset.zarr", out)
    print(f"  dataset of {n_takes} take(s) + tests: {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def subset(split, recording: str):
    """The chunks of one recording of a split, as a split of their own."""
    from animote.evaluate import Split

    keep = [i for i, (rec, _) in enumerate(split.names) if rec == recording]
    idx = np.concatenate([np.arange(*split.bounds[i]) for i in keep])
    lengths = [int(split.bounds[i][1] - split.bounds[i][0]) for i in keep]
    bounds = np.stack([np.cumsum([0] + lengths[:-1]), np.cumsum(lengths)], 1)
    return Split([split.names[i] for i in keep], {r: f[idx] for r, f in split.features.items()}, split.offsets[idx],
                 split.neutral[idx], split.mask[idx], bounds, {t: v[idx] for t, v in split.channels.items()},
                 split.channel_names)


def score_size(args, config: dict, minutes: float, path: Path) -> list[dict]:
    """Train each experiment and fit the baselines on one size's dataset; score all of them on
    each held-out test recording (intervals from the same test windows for every model)."""
    import tempfile

    from animote.baselines import fit_ridges
    from animote.config import merge_experiment
    from animote.dataset import Dataset, denormalise_channels
    from animote.evaluate import load_split, predict_targets, score, score_targets
    from animote.predict import Predictor
    from animote.train import TrainConfig, fit, save_checkpoint

    ds = Dataset(path)
    ev = config["evaluate"]
    frames = {split: sum(c["frames"] for c in ds.attrs["chunks"] if c["split"] == split) for split in
              ("train", "validation")}
    train_frames, val_frames = frames["train"], frames["validation"]
    base = {"minutes": minutes, "train_min": train_frames / ds.fps / 60, "validation_min": val_frames / ds.fps / 60}
    preds: dict[str, tuple[list[str], callable]] = {}
    info: dict[str, dict] = {}
    roles_all = list(config["train"]["roles"])
    for name in args.experiments:
        cfg = merge_experiment(config["train"], config["sweep"]["experiments"][name] or {})
        cfg.update(device=args.device, threads=args.cores)
        if args.epochs:
            cfg["epochs"] = args.epochs
        t0 = time.perf_counter()
        res = fit(ds, TrainConfig.from_dict(cfg), progress=False)
        seconds = time.perf_counter() - t0
        ckpt = Path(tempfile.mkdtemp()) / "model.pt"
        save_checkpoint(ckpt, res.model, TrainConfig.from_dict(cfg), ds, {"experiment": name})
        predictor = Predictor.load(ckpt, overlap=ev["overlap"])
        preds[name] = (list(cfg["roles"]), predictor.predict_targets)
        info[name] = {"seconds": seconds, "best_epoch": res.best_epoch, "epochs_run": len(res.history),
                      "val_loss": res.best.get("val_loss"), "val_r2": res.best.get("val_r2")}
        print(f"  {minutes:g} min: {name} trained in {seconds:.0f} s, best epoch {res.best_epoch} of "
              f"{len(res.history)}, validation R² {res.best.get('val_r2', float('nan')):.3f}", flush=True)
    t0 = time.perf_counter()
    channels = [t for t in ds.targets if t == "blendshapes"]  # the channel targets scored here
    ridges = fit_ridges(ds.sequences("train", roles_all, channels), ds.sequences("validation", roles_all, channels),
                        ev["ridge"]["contexts"], ev["ridge"]["alphas"], ["offsets", *channels])
    ridge = ridges["offsets"]
    info["ridge"] = {"seconds": time.perf_counter() - t0, "context": ridge.context, "alpha": ridge.alpha,
                     "val_mse": ridge.validation_mse[(ridge.context, ridge.alpha)]}
    print(f"  {minutes:g} min: ridge context {ridge.context}, alpha {ridge.alpha:g} chosen on validation "
          f"({info['ridge']['seconds']:.0f} s)", flush=True)

    def ridge_predict(f):
        x, b = ds.normalise_inputs(f, roles_all), np.array([[0, len(next(iter(f.values())))]])
        return {"offsets": ds.denormalise_targets(ridge.predict(x, b)),
                **{t: denormalise_channels(t, ridges[t].predict(x, b), ds.norm) for t in channels}}

    def mean_predict(f):
        n = len(next(iter(f.values())))
        return {"offsets": np.broadcast_to(ds.norm["offset_mean"], (n, 468, 3)),
                **{t: np.broadcast_to(ds.norm[f"target_{t}_mean"], (n, len(ds.channel_names(t)))) for t in channels}}

    preds["ridge"], preds["mean"] = (roles_all, ridge_predict), (roles_all, mean_predict)
    # the validation split, scored with the evaluation's objective: what a recipe is chosen by
    loaded: dict[tuple[str, tuple[str, ...]], object] = {}

    def split_of(kind: str, roles: list[str]):
        """A split's chunks for a role set, read from the store once."""
        if (kind, tuple(roles)) not in loaded:
            loaded[kind, tuple(roles)] = load_split(ds, kind, roles)
        return loaded[kind, tuple(roles)]

    val = {}
    for name, (roles, predict) in preds.items():
        vsplit = split_of("validation", roles)
        vp = predict_targets(vsplit, predict)
        v = score(ds, vsplit, vp["offsets"].astype(np.float32), ev["loss"], ev["max_lag"])["summary"]
        val[name] = {"val_loss": v["loss"], "val_r2": v["r2"], "val_lve_permil": 1e3 * v["lve"]}
        if "blendshapes" in vp:
            val[name]["val_bs_r2"] = score_targets(vsplit, vp, ds.fps, ev["max_lag"])["blendshapes"]["r2"]
    from animote.intervals import difference, interval

    rows = []
    for test in TEST_RECORDINGS:
        scored, channel_scores = {}, {}
        for name, (roles, predict) in preds.items():
            sub = subset(split_of("test", roles), test)
            pred = predict_targets(sub, predict)
            boot = {**ev["bootstrap"], "samples": args.boot}
            scored[name] = score(ds, sub, pred["offsets"].astype(np.float32), ev["loss"], ev["max_lag"], boot)
            channel_scores[name] = score_targets(sub, pred, ds.fps, ev["max_lag"], bootstrap=boot).get("blendshapes")
        ridge_bs = channel_scores.get("ridge")
        r_samples = np.asarray(scored["ridge"]["intervals"]["samples"]["r2"])
        l_samples = np.asarray(scored["ridge"]["intervals"]["samples"]["lve"])
        for name, res in scored.items():
            s, ci = res["summary"], res["intervals"]["ci"]
            samp = res["intervals"]["samples"]
            row = {**base, "test": test, "model": name, "windows": res["intervals"]["windows"],
                   "r2": s["r2"], "r2_lo": ci["r2"][0], "r2_hi": ci["r2"][1],
                   "lve_permil": 1e3 * s["lve"], "lve_lo": 1e3 * ci["lve"][0], "lve_hi": 1e3 * ci["lve"][1],
                   "lip_r": s["lip_sync_corr"], "lip_r_lo": ci["lip_sync_corr"][0], "lip_r_hi": ci["lip_sync_corr"][1],
                   "lag": s["lip_sync_lag"], "loss": s["loss"], **val[name],
                   **{k: v for k, v in info.get(name, {}).items() if k not in ("val_loss", "val_r2")}}
            b = channel_scores.get(name)
            if b:
                bci = b["intervals"]["ci"]
                row.update(bs_r2=b["r2"], bs_r2_lo=bci["r2"][0], bs_r2_hi=bci["r2"][1],
                           jaw_r=b["jaw_open"]["r"],
                           jaw_r_lo=bci["corr"][0], jaw_r_hi=bci["corr"][1], jaw_lag=b["jaw_open"]["lag"],
                           **{f"bs_{g}_r2": v["r2"] for g, v in b["groups"].items()})
                if ridge_bs and name not in ("ridge", "mean"):
                    d = difference(b["intervals"]["samples"]["r2"], ridge_bs["intervals"]["samples"]["r2"])
                    row.update(dbs_r2_vs_ridge=b["r2"] - ridge_bs["r2"], dbs_r2_lo=d[0], dbs_r2_hi=d[1])
            if name not in ("ridge", "mean"):
                d = difference(samp["r2"], r_samples)
                ratio = interval(np.asarray(samp["lve"]) / l_samples)
                row.update(dr2_vs_ridge=s["r2"] - scored["ridge"]["summary"]["r2"], dr2_lo=d[0], dr2_hi=d[1],
                           lve_ratio=s["lve"] / scored["ridge"]["summary"]["lve"],
                           lve_ratio_lo=ratio[0], lve_ratio_hi=ratio[1])
            rows.append(row)
    return rows


def print_tables(table: pd.DataFrame) -> None:
    if "bs_r2" in table:
        print("\nblendshapes (95 % bootstrap intervals over the same windows)")
        print("| test | train min | model | blendshape R² | jaw and mouth R² | jawOpen r | lag | ΔR² vs ridge (paired) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in table[table.bs_r2.notna()].itertuples():
            d = getattr(r, "dbs_r2_vs_ridge", np.nan)
            delta = f"{d:+.3f} ({r.dbs_r2_lo:+.3f}, {r.dbs_r2_hi:+.3f})" if np.isfinite(d) else ""
            print(f"| {r.test} | {r.train_min:.1f} | {r.model} | {r.bs_r2:.3f} ({r.bs_r2_lo:.3f}, {r.bs_r2_hi:.3f}) | "
                  f"{r.bs_jaw_mouth_r2:.3f} | {r.jaw_r:.3f} ({r.jaw_r_lo:.3f}, {r.jaw_r_hi:.3f}) | {r.jaw_lag:+.0f} | "
                  f"{delta} |")
    for test, t in table.groupby("test", sort=False):
        print(f"\ntest recording {test} (95 % bootstrap intervals over {int(t.windows.iloc[0])} windows of the test split)")
        print("| train min | model | R² (offsets) | LVE ‰ | lip-sync r | lag | ΔR² vs ridge (paired) | LVE / ridge | "
              "train s | best epoch |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in t.itertuples():
            delta = (f"{r.dr2_vs_ridge:+.3f} ({r.dr2_lo:+.3f}, {r.dr2_hi:+.3f})"
                     if isinstance(getattr(r, "dr2_vs_ridge", None), float) and np.isfinite(r.dr2_vs_ridge) else "")
            ratio = (f"{r.lve_ratio:.2f} ({r.lve_ratio_lo:.2f}, {r.lve_ratio_hi:.2f})"
                     if isinstance(getattr(r, "lve_ratio", None), float) and np.isfinite(r.lve_ratio) else "")
            extra = getattr(r, "best_epoch", np.nan)
            print(f"| {r.train_min:.1f} | {r.model} | {r.r2:.3f} ({r.r2_lo:.3f}, {r.r2_hi:.3f}) | "
                  f"{r.lve_permil:.2f} ({r.lve_lo:.2f}, {r.lve_hi:.2f}) | {r.lip_r:.3f} ({r.lip_r_lo:.3f}, {r.lip_r_hi:.3f}) "
                  f"| {r.lag:+.0f} | {delta} | {ratio} | {r.seconds:.0f} | "
                  f"{'' if not np.isfinite(extra) else int(extra)} |")


def plot(table: pd.DataFrame, out: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tests = list(dict.fromkeys(table.test))
    panels = [("r2", "r2_lo", "r2_hi", "test R² (offsets)"), ("lve_permil", "lve_lo", "lve_hi", "LVE (‰ of width)"),
              ("lip_r", "lip_r_lo", "lip_r_hi", "lip-sync r")]
    fig, axes = plt.subplots(len(tests), 3, figsize=(13, 3.6 * len(tests)), squeeze=False)
    for i, test in enumerate(tests):
        t = table[table.test == test]
        for j, (y, lo, hi, label) in enumerate(panels):
            ax = axes[i][j]
            for k, (model, g) in enumerate(t.groupby("model", sort=False)):
                x = g.train_min * (1 + 0.02 * (k - 1.5))  # a little apart, so the bars do not hide each other
                ax.errorbar(x, g[y], yerr=[g[y] - g[lo], g[hi] - g[y]], marker="o", capsize=3, label=model)
            ax.set_xscale("log")
            ax.set_xticks(sorted(set(t.train_min.round(1))))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("minutes of training speech")
            ax.set_ylabel(label)
            ax.set_title(f"{test}: {label}")
            ax.grid(alpha=0.3)
        axes[i][0].legend(fontsize=8)
    fig.suptitle("Learning curve: network vs ridge vs mean (95 % bootstrap intervals over test windows)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="+", default=[2.5, 5, 10, 20],
                    help="sizes to train at; the takes are always cut from the ladder 2.5, 5, 10, 20, 40 (and any "
                         "larger size asked for), so every size's data holds the smaller ones'")
    ap.add_argument("--voices", nargs="+", default=["slt", "kal"])
    ap.add_argument("--test-voice", default="ked")
    ap.add_argument("--work", type=Path, default=Path("/tmp/animote-learning-curve"))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--stage", choices=["prepare", "all"], default="all")
    ap.add_argument("--experiments", nargs="+", default=["recipe", "paper"],
                    help="experiments of the sweep to train at every size")
    ap.add_argument("--sweep", type=Path, default=None,
                    help="a sweep file (e.g. config/sweeps/recipe.yaml) whose experiments --experiments names")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs (the maximum)")
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--name", default="learning_curve", help="the table and plot are written as NAME.tsv, NAME.png")
    ap.add_argument("--tracker", choices=["facemesh", "landmarker"], default="facemesh",
                    help="mesh.tracker of the recordings (landmarker: blendshapes too)")
    ap.add_argument("--rerun-triggers", default=None,
                    help="passed to snakemake (mtime: keep recordings preprocessed by older code)")
    args = ap.parse_args()
    minutes = sorted(args.minutes)
    ladder = sorted(set(LADDER) | {m for m in minutes if m > max(LADDER)})
    if not set(minutes) <= set(ladder):
        raise SystemExit(f"--minutes must be sizes of the ladder {ladder} (the takes are cut from it)")
    from animote.config import deep_merge as merge

    config = merge(yaml.safe_load((REPO / "config" / "config.yaml").read_text()),
                   yaml.safe_load((REPO / "config" / "demo.yaml").read_text()))  # the takes are demo recordings
    if args.sweep:
        config = merge(config, yaml.safe_load(args.sweep.read_text()))
    plan = takes_plan(ladder[:ladder.index(max(minutes)) + 1], args.voices, args.test_voice, config)
    args.work.mkdir(parents=True, exist_ok=True)
    print("recordings: " + ", ".join(f"{p['name']} {p['minutes']:g} min" for p in plan), flush=True)
    make_takes(args.work, plan)
    datasets = {}
    for k, m in enumerate(ladder, start=1):
        if m in minutes:
            datasets[m] = prepare(args.work, plan, k, args.cores, args.tracker, args.rerun_triggers)
    if args.stage == "prepare":
        return
    rows = []
    for m, path in datasets.items():
        rows += score_size(args, config, m, path)
        table = pd.DataFrame(rows)
        table.to_csv(args.work / f"{args.name}.tsv", sep="\t", index=False, float_format="%.6g")
    print_tables(table)
    plot(table, args.work / f"{args.name}.png")
    print(f"wrote {args.work / args.name}.tsv and .png")


if __name__ == "__main__":
    main()
