rule dataset:
    input:
        aligned=expand("results/{rec}/aligned", rec=RECORDINGS.index),
        neutral=expand("results/{rec}/neutral.zarr", rec=RECORDINGS.index),
        phonetic=expand(f"results/features/{FEATURES['phonetic'][0]}/{{rec}}", rec=RECORDINGS.index),
        emotion=expand(f"results/features/{FEATURES['emotion'][0]}/{{rec}}", rec=RECORDINGS.index),
    output:
        directory("results/dataset/dataset.zarr"),
    params:
        code=code_version("dataset"),  # the stage's library code
        dataset=config["dataset"],
        roles=feature_roles(),
    resources:
        **job_resources("dataset"),
    log:
        "results/logs/dataset/dataset.log",
    benchmark:
        "results/benchmarks/dataset/dataset.tsv"
    conda:
        "../../envs/animote.yaml"
    script:
        "../scripts/dataset.py"


# The tracking store and its experiment, created once before any training job writes to it.
rule tracking_store:
    output:
        "results/mlflow/experiment.json",
    params:
        mlflow=config["mlflow"],
    log:
        "results/logs/tracking_store/store.log",
    localrule: True
    conda:
        "../../envs/animote.yaml"
    script:
        "../scripts/tracking_store.py"


# The sweep's MLflow parent run; its output holds the run id the training jobs nest under.
rule sweep_run:
    input:
        "results/mlflow/experiment.json",
    output:
        "results/train/{sweep}/parent_run.json",
    log:
        "results/logs/sweep_run/{sweep}.log",
    localrule: True
    conda:
        "../../envs/animote.yaml"
    script:
        "../scripts/sweep_run.py"


rule train:
    input:
        dataset="results/dataset/dataset.zarr",
        parent="results/train/{sweep}/parent_run.json",
    output:
        model="results/train/{sweep}/{exp}/model.pt",
        run="results/train/{sweep}/{exp}/run.json",
        history="results/train/{sweep}/{exp}/history.tsv",
        plot=report("results/train/{sweep}/{exp}/loss.png", caption="../report/loss.rst", category="Experiments",
                    subcategory="{exp}", labels={"experiment": "{exp}", "figure": "loss curves"}),
    params:
        code=code_version("train"),  # the stage's library code
        train=experiment_config,
    threads: config["train"]["threads"]
    resources:
        gpu=experiment_gpu,
        **job_resources("train"),
    log:
        "results/logs/train/{sweep}/{exp}.log",
    benchmark:
        "results/benchmarks/train/{sweep}/{exp}.tsv"
    conda:
        "../../envs/animote.yaml"
    script:
        "../scripts/train.py"


rule sweep_summary:
    input:
        parent="results/train/{sweep}/parent_run.json",
        runs=expand("results/train/{{sweep}}/{exp}/run.json", exp=EXPERIMENTS),
        histories=expand("results/train/{{sweep}}/{exp}/history.tsv", exp=EXPERIMENTS),
    output:
        "results/train/{sweep}/sweep.tsv",
    params:
        code=code_version("train"),  # the stage's library code
        configs=EXPERIMENTS,
    log:
        "results/logs/sweep_summary/{sweep}.log",
    localrule: True
    conda:
        "../../envs/animote.yaml"
    script:
        "../scripts/sweep_summary.py"
