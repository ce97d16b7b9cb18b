# One job per backend and recording: a folder with a store per chunk (cNNN.zarr). The backend's
# imports and model load once per worker (seconds, against a fraction of a second of features per
# chunk); a CPU backend's job runs features.workers chunks at once (its threads).
rule audio_features:
    input:
        chunks="results/{rec}/chunks",
    output:
        directory("results/features/{backend}/{variant}/{rec}"),
    log:
        "results/logs/audio_features/{backend}/{variant}/{rec}.log",
    benchmark:
        "results/benchmarks/audio_features/{backend}/{variant}/{rec}.tsv"
    conda:
        "../../envs/animote.yaml"
    threads: feature_threads
    resources:
        **job_resources("audio_features"),
        gpu=feature_gpu,
    params:
        **stage("features", "audio_features"),
        spec=feature_spec,
    script:
        STAGE_SCRIPT


rule features_report:
    input:
        **feature_folders("{rec}"),
        chunks="results/{rec}/chunks",
    output:
        "results/{rec}/features.tsv",
    log:
        "results/logs/features_report/{rec}.log",
    benchmark:
        "results/benchmarks/features_report/{rec}.tsv"
    conda:
        "../../envs/animote.yaml"
    resources:
        **job_resources("features_report"),
    params:
        **stage("features", "features_report"),
        # Not read by the job: it makes a backend switch rewrite this report (and nothing else).
        cache_keys={role: src.cache_key for role, src in FEATURES.items()},
    script:
        STAGE_SCRIPT
