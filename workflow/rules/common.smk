import sys
from pathlib import Path

from snakemake.utils import validate

from animote.baselines import baseline_set
from animote.config import add_demo_defaults, check_renamed, gpu_visible, needs_gpu, sweep_experiments
from animote.features import active_specs, job_workers, uses_torch
from animote.recordings import load_sheet
from animote.stagecode import code_version

check_renamed(config)  # a key that was renamed: say what replaced it, before the schema says "unknown"
RECORDINGS = load_sheet(config["recordings"])  # its checks name the line of a bad row
validate(RECORDINGS, schema="../schemas/recordings.schema.yaml")
add_demo_defaults(config, RECORDINGS.path, Path(workflow.current_basedir).parents[1] / "config" / "demo.yaml")
validate(config, schema="../../config/schema.yaml")
FEATURES = active_specs(config["features"])  # role -> FeatureSource(cache_key, spec)
SWEEP = config["sweep"]["name"]
EXPERIMENTS = sweep_experiments(config)  # name -> full training config
BASELINES = baseline_set(EXPERIMENTS)  # name -> {kind, roles, label}


STAGE_SCRIPT = "../scripts/stage.py"  # every rule's: it runs animote.stages.<params.stage>.<params.run>()


def stage(name, run, **params):
    """A rule's params: the stage module and its function that runs the job (named like the rule,
    and named here so that a workflow using this one as a module may rename its rules), the hash
    of that stage's library code (its import closure: an edit reruns the stage's jobs), and the
    rule's own settings."""
    return dict(stage=name, run=run, code=code_version(name), **params)


def experiment_figure(path, figure, caption, **kw):
    """An experiment's figure in `snakemake --report`: under Experiments, its experiment's
    subcategory, labelled ``figure``; ``caption`` names workflow/report/<caption>.rst."""
    return report(
        path,
        caption=f"../report/{caption}.rst",
        category="Experiments",
        subcategory="{exp}",
        labels={"experiment": "{exp}", "figure": figure},
        **kw,
    )


def chunk_dirs(wildcards, input):
    """recording -> its chunk folder, from a rule's ``chunks`` input (every recording's, in sheet order)."""
    return dict(zip(RECORDINGS.index, input.chunks))


def feature_folders(rec):
    """Each feature role's folder of per-chunk stores, role -> [path] (``rec``: a recording, a
    wildcard pattern, or several recordings)."""
    return {role: expand(f"results/features/{src.cache_key}/{{rec}}", rec=rec) for role, src in FEATURES.items()}


def job_resources(rule_name):
    """What a job of ``rule_name`` asks a scheduler for (mem_mb, runtime in minutes): the config's
    ``resources.default`` with the rule's own entry over it; ``mem_mb_per_thread`` adds that much
    memory for each thread the job gets."""
    res = dict(config["resources"]["default"], **(config["resources"].get(rule_name) or {}))
    per_thread = res.pop("mem_mb_per_thread", 0)
    if per_thread:
        base = res["mem_mb"]
        res["mem_mb"] = lambda wildcards, threads: base + per_thread * threads
    return res


wildcard_constraints:
    rec=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    chunk=r"c\d{3}",
    backend=r"[a-z0-9-]+",
    variant=r"[A-Za-z0-9_.+-]+",
    sweep=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    exp=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    baseline=r"mean_offset|ridge_[a-z-]+",


def recording_source(wildcards):
    return RECORDINGS.loc[wildcards.rec, "path"]


def neutral_image(wildcards):
    return RECORDINGS.loc[wildcards.rec, "neutral"]


def neutral_inputs(wildcards):
    inputs = {
        "meshes": f"results/{wildcards.rec}/mesh",
        "chunks": f"results/{wildcards.rec}/chunks",
    }
    if neutral_image(wildcards):
        inputs["image"] = neutral_image(wildcards)
    return inputs


def feature_spec(wildcards):
    """The backend spec behind a feature cache path (only the active backends are built)."""
    key = f"{wildcards.backend}/{wildcards.variant}"
    for src in FEATURES.values():
        if src.cache_key == key:
            return src.spec
    raise ValueError(f"no active feature backend has cache key {key}")


def gpu_here():
    """A job may get a GPU: on a cluster (SLURM gives one on request), or on this machine if it has one."""
    return not workflow.local_exec or gpu_visible()


def feature_gpu(wildcards):
    spec = feature_spec(wildcards)
    return needs_gpu(spec["device"], gpu_here()) if uses_torch(spec) else 0


def feature_threads(wildcards):
    """Chunks at once in a feature job (``animote.features.job_workers``)."""
    return job_workers(feature_spec(wildcards), config["features"]["workers"])


def feature_roles():
    """What the dataset records of each feature role: its cache key and backend spec."""
    return {role: src._asdict() for role, src in FEATURES.items()}


def experiment_config(wildcards):
    return EXPERIMENTS[wildcards.exp]


def experiment_gpu(wildcards):
    return needs_gpu(EXPERIMENTS[wildcards.exp]["device"], gpu_here())


def final_targets():
    return (
        ["results/report/preprocess.tsv"]
        + expand("results/{rec}/claps.png", rec=RECORDINGS.index)
        + expand(
            "results/report/{sweep}/{table}.html",
            sweep=SWEEP,
            table=["sweep", "ablation", "features", "targets"],
        )
        + expand("results/models/{sweep}/{exp}", sweep=SWEEP, exp=EXPERIMENTS)
        + expand("results/train/{sweep}/registered.json", sweep=SWEEP)
        + expand("results/{rec}/mesh_{what}", rec=RECORDINGS.index, what=["summary.tsv", "preview.png"])
        + expand("results/{rec}/features.tsv", rec=RECORDINGS.index)
    )


FAILED_JOB = "Error in rule"  # how Snakemake's log opens the block of a failed job


def report_failures(snakemake_logs):
    """The run's last lines after a failure: each failed job, its error and the log to read (Snakemake
    itself ends with "look above", which in a long --keep-going run is thousands of lines up)."""
    logs = [snakemake_logs] if isinstance(snakemake_logs, (str, Path)) else list(snakemake_logs)
    failed, failing = [], None
    text = "\n".join(Path(p).read_text(errors="replace") for p in logs if Path(p).exists())
    for line in text.splitlines():
        if line.startswith(FAILED_JOB + " "):
            failing = line[len(FAILED_JOB) + 1 :].rstrip(":")
        elif failing and line.startswith("    log: "):
            failed.append((failing, line[len("    log: ") :].split(" (")[0]))
            failing = None
        elif failing and not line.startswith("    "):
            failed.append((failing, None))
            failing = None
    if not failed:
        return
    lines = [f"animote: {len(failed)} job(s) failed:"]
    for name, job_log in failed:
        if job_log is None:
            lines.append(f"  {name}: no log; see {', '.join(map(str, logs))}")
            continue
        tail = (
            [t for t in Path(job_log).read_text(errors="replace").splitlines() if t.strip()]
            if Path(job_log).exists()
            else []
        )
        error = next((t for t in reversed(tail) if not t.startswith((" ", "\t"))), "(empty log)")
        lines.append(f"  {name}: {error[:300]}")
        lines.append(f"    read {job_log}")
    lines.append("Fix them (or take a broken recording out of the sheet) and run again: finished jobs are kept.")
    print("\n".join(lines), file=sys.stderr)
