rule dataset:
    input:
        **feature_folders(RECORDINGS.index),
        aligned=expand("results/{rec}/aligned", rec=RECORDINGS.index),
        neutral=expand("results/{rec}/neutral.zarr", rec=RECORDINGS.index),
    output:
        directory("results/dataset/dataset.zarr"),
    log:
        "results/logs/dataset/dataset.log",
    benchmark:
        "results/benchmarks/dataset/dataset.tsv"
    conda:
        "../../envs/animote.yaml"
    resources:
        **job_resources("dataset"),
    params:
        **stage("dataset", "dataset"),
        dataset=config["dataset"],
        roles=feature_roles(),
    script:
        STAGE_SCRIPT


# The tracking store and its experiment, created once before any training job writes to it.
rule tracking_store:
    output:
        "results/mlflow/experiment.json",
    log:
        "results/logs/tracking_store/store.log",
    benchmark:
        "results/benchmarks/tracking_store/store.tsv"
    localrule: True
    conda:
        "../../envs/animote.yaml"
    params:
        **stage("train", "tracking_store"),
        mlflow=config["mlflow"],
    script:
        STAGE_SCRIPT


# The sweep's MLflow parent run; its output holds the run id the training jobs nest under.
rule sweep_run:
    input:
        "results/mlflow/experiment.json",
    output:
        "results/train/{sweep}/parent_run.json",
    log:
        "results/logs/sweep_run/{sweep}.log",
    benchmark:
        "results/benchmarks/sweep_run/{sweep}.tsv"
    localrule: True
    conda:
        "../../envs/animote.yaml"
    params:
        **stage("train", "sweep_run"),
    script:
        STAGE_SCRIPT


rule train:
    input:
        dataset="results/dataset/dataset.zarr",
        parent="results/train/{sweep}/parent_run.json",
    output:
        model="results/train/{sweep}/{exp}/model.pt",
        run="results/train/{sweep}/{exp}/run.json",
        history="results/train/{sweep}/{exp}/history.tsv",
        plot=experiment_figure("results/train/{sweep}/{exp}/loss.png", "loss curves", "loss"),
    log:
        "results/logs/train/{sweep}/{exp}.log",
    benchmark:
        "results/benchmarks/train/{sweep}/{exp}.tsv"
    conda:
        "../../envs/animote.yaml"
    threads: config["train"]["threads"]
    resources:
        **job_resources("train"),
        gpu=experiment_gpu,
    params:
        **stage("train", "train"),
        train=experiment_config,
    script:
        STAGE_SCRIPT


rule sweep_summary:
    input:
        parent="results/train/{sweep}/parent_run.json",
        runs=expand("results/train/{{sweep}}/{exp}/run.json", exp=EXPERIMENTS),
        histories=expand("results/train/{{sweep}}/{exp}/history.tsv", exp=EXPERIMENTS),
    output:
        "results/train/{sweep}/sweep.tsv",
    log:
        "results/logs/sweep_summary/{sweep}.log",
    benchmark:
        "results/benchmarks/sweep_summary/{sweep}.tsv"
    localrule: True
    conda:
        "../../envs/animote.yaml"
    params:
        **stage("train", "sweep_summary"),
        configs=EXPERIMENTS,
    script:
        STAGE_SCRIPT
