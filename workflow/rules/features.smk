rule audio_features:
    input:
        chunks="results/{rec}/chunks",
    output:
        directory("results/features/{backend}/{variant}/{rec}/{chunk}.zarr"),
    params:
        spec=feature_spec,
    resources:
        gpu=feature_gpu,
        **job_resources("audio_features"),
    log:
        "results/logs/audio_features/{backend}/{variant}/{rec}/{chunk}.log",
    benchmark:
        "results/benchmarks/audio_features/{backend}/{variant}/{rec}/{chunk}.tsv"
    conda:
        "../../envs/animote.yaml"
    script:
        "../scripts/audio_features.py"


rule features_report:
    input:
        phonetic=chunk_files(f"results/features/{FEATURES['phonetic'][0]}/{{rec}}/{{chunk}}.zarr"),
        emotion=chunk_files(f"results/features/{FEATURES['emotion'][0]}/{{rec}}/{{chunk}}.zarr"),
        chunks="results/{rec}/chunks",
    output:
        "results/{rec}/features.tsv",
    params:
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
