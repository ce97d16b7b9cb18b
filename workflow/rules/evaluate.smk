# Evaluation: every experiment and the baselines on the same split, then the sweep's report.
# `snakemake --report results/report.zip` gathers what is marked with report() below.


rule evaluate_baseline:
    input:
        dataset="results/dataset/dataset.zarr",
        chunks=expand("results/{rec}/chunks", rec=RECORDINGS.index),
    output:
        metrics="results/baselines/{baseline}/metrics.json",
        regions="results/baselines/{baseline}/regions.tsv",
    log:
        "results/logs/evaluate_baseline/{baseline}.log",
    benchmark:
        "results/benchmarks/evaluate_baseline/{baseline}.tsv"
    conda:
        "../../envs/animote.yaml"
    resources:
        **job_resources("evaluate_baseline"),
    params:
        **stage("evaluate", "evaluate_baseline"),
        kind=lambda wc: BASELINES[wc.baseline]["kind"],
        roles=lambda wc: BASELINES[wc.baseline]["roles"],
        evaluate=config["evaluate"],
        chunk_dirs=chunk_dirs,
    script:
        STAGE_SCRIPT


rule evaluate:
    input:
        dataset="results/dataset/dataset.zarr",
        model="results/train/{sweep}/{exp}/model.pt",
        run="results/train/{sweep}/{exp}/run.json",
        chunks=expand("results/{rec}/chunks", rec=RECORDINGS.index),
    output:
        metrics="results/evaluate/{sweep}/{exp}/metrics.json",
        regions="results/evaluate/{sweep}/{exp}/regions.tsv",
        mesh=experiment_figure("results/evaluate/{sweep}/{exp}/mesh.png", "mesh", "mesh"),
        error_map=experiment_figure("results/evaluate/{sweep}/{exp}/error_map.png", "error map", "error_map"),
        lip_gap=experiment_figure("results/evaluate/{sweep}/{exp}/lip_gap.png", "lip gap", "lip_gap"),
        targets=experiment_figure(
            "results/evaluate/{sweep}/{exp}/targets.png", "blendshapes and head pose", "targets_curves"
        ),
        video=experiment_figure(
            directory("results/evaluate/{sweep}/{exp}/video"), "video", "video", htmlindex="index.html"
        ),
    log:
        "results/logs/evaluate/{sweep}/{exp}.log",
    benchmark:
        "results/benchmarks/evaluate/{sweep}/{exp}.tsv"
    conda:
        "../../envs/animote.yaml"
    threads: config["train"]["threads"]
    resources:
        **job_resources("evaluate"),
    params:
        **stage("evaluate", "evaluate"),
        evaluate=config["evaluate"],
        chunk_dirs=chunk_dirs,
    script:
        STAGE_SCRIPT


rule sweep_report:
    input:
        parent="results/train/{sweep}/parent_run.json",
        summary="results/train/{sweep}/sweep.tsv",  # the parent run's training summary comes first
        evaluations=expand("results/evaluate/{{sweep}}/{exp}/metrics.json", exp=EXPERIMENTS),
        baselines=expand("results/baselines/{baseline}/metrics.json", baseline=BASELINES),
    output:
        sweep_html=report(
            "results/report/{sweep}/sweep.html",
            caption="../report/sweep.rst",
            category="Sweep",
            labels={"table": "sweep"},
        ),
        ablation_html=report(
            "results/report/{sweep}/ablation.html",
            caption="../report/ablation.rst",
            category="Sweep",
            labels={"table": "ablation"},
        ),
        features_html=report(
            "results/report/{sweep}/features.html",
            caption="../report/features.rst",
            category="Sweep",
            labels={"table": "features"},
        ),
        targets_html=report(
            "results/report/{sweep}/targets.html",
            caption="../report/targets.rst",
            category="Sweep",
            labels={"table": "blendshapes and head pose"},
        ),
        sweep_tsv="results/report/{sweep}/sweep.tsv",
        ablation_tsv="results/report/{sweep}/ablation.tsv",
        features_tsv="results/report/{sweep}/features.tsv",
        targets_tsv="results/report/{sweep}/targets.tsv",
        markdown="results/report/{sweep}/tables.md",
    log:
        "results/logs/sweep_report/{sweep}.log",
    benchmark:
        "results/benchmarks/sweep_report/{sweep}.tsv"
    localrule: True
    conda:
        "../../envs/animote.yaml"
    params:
        **stage("evaluate", "sweep_report"),
        configs=EXPERIMENTS,
        defaults=config["train"],
        baselines={b["label"]: f"results/baselines/{name}/metrics.json" for name, b in BASELINES.items()},
    script:
        STAGE_SCRIPT


# Each experiment's model as a folder to share: safetensors weights, JSON and npz, and a model card
# with its licence and its test scores beside the baselines' (animote.share).
rule share_model:
    input:
        model="results/train/{sweep}/{exp}/model.pt",
        metrics="results/evaluate/{sweep}/{exp}/metrics.json",
        baselines=expand("results/baselines/{baseline}/metrics.json", baseline=sorted(BASELINES)),
        dataset="results/dataset/dataset.zarr",
    output:
        directory("results/models/{sweep}/{exp}"),
    log:
        "results/logs/share_model/{sweep}/{exp}.log",
    benchmark:
        "results/benchmarks/share_model/{sweep}/{exp}.tsv"
    localrule: True
    conda:
        "../../envs/animote.yaml"
    params:
        **stage("share", "share_model"),
        baselines=[BASELINES[name]["label"] for name in sorted(BASELINES)],  # sorted: the sweep's order may change
    script:
        STAGE_SCRIPT


# The sweep's best experiment by validation loss (never by test) in the MLflow registry, with the
# alias "best": `animote animate --model models:/<name>@best`.
rule register_model:
    input:
        report="results/report/{sweep}/sweep.tsv",
        summary="results/train/{sweep}/sweep.tsv",
        runs=expand("results/train/{{sweep}}/{exp}/run.json", exp=EXPERIMENTS),
        evaluations=expand("results/evaluate/{{sweep}}/{exp}/metrics.json", exp=EXPERIMENTS),
    output:
        "results/train/{sweep}/registered.json",
    log:
        "results/logs/register_model/{sweep}.log",
    benchmark:
        "results/benchmarks/register_model/{sweep}.tsv"
    localrule: True
    conda:
        "../../envs/animote.yaml"
    params:
        **stage("share", "register_model"),
        experiments=list(EXPERIMENTS),
        model_name=config["mlflow"]["model_name"],
    script:
        STAGE_SCRIPT
