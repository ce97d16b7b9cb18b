# One job per backend and recording: a folder with a store per chunk (cNNN.zarr). The backend's
# imports and model load once per worker (seconds, against a fraction of a second of features per
# chunk); a CPU backend's job runs features.workers chunks at once (its threads).
rule audio_features:
    input:
        chunks="results/{rec}/chunks",
    output:
        directory("results/features/{backend}/{variant}/{rec}"),
    params:
        code=code_version("features"),  # the stage's library code
        spec=feature_spec,
    threads: feature_threads
    resources:
        gpu=feature_gpu,
        **job_resources("audio_features"),
    log:
        "results/logs/audio_features/{backend}/{variant}/{rec}.log",
    benchmark:
        "results/benchmarks/audio_features/{backend}/{variant}/{rec}.tsv"
    conda:
        "../../envs/animote.yaml"
    script:
        "../scripts/audio_features.py"


rule features_report:
    input:
        phonetic=f"results/features/{FEATURES['phonetic'][0]}/{{rec}}",
        emotion=f"results/features/{FEATURES['emotion'][0]}/{{rec}}",
        chunks="results/{rec}/chunks",
    output:
        "results/{rec}/features.tsv",
    params:
        code=code_version("features"),  # the stage's library code
        # Not read by the script: it makes a backend switch rewrite this report (and nothing else).
        cache_keys={role: key for role, (key, _) in FEATURES.items()},
    resources:
        **job_resources("features_report"),
    log:
        "results/logs/features_report/{rec}.log",
    conda:
        "../../envs/animote.yaml"
    script:
        "../scripts/features_report.py"
