rule probe:
    input:
        video=recording_source,
    output:
        info="results/{rec}/probe.json",
        video="results/{rec}/video.mp4",
        audio="results/{rec}/audio.wav",
    log:
        "results/logs/probe/{rec}.log",
    benchmark:
        "results/benchmarks/probe/{rec}.tsv"
    conda:
        "../../envs/animote.yaml"
    resources:
        **job_resources("probe"),
    params:
        **stage("preprocess", "probe"),
        video=config["video"],
        sample_rate=config["audio"]["sample_rate"],
    script:
        STAGE_SCRIPT


rule remove_claps:
    input:
        info="results/{rec}/probe.json",
        video="results/{rec}/video.mp4",  # claps are found at the recording's own audio rate
        audio="results/{rec}/audio.wav",
    output:
        cuts="results/{rec}/claps.tsv",
        kept="results/{rec}/kept.tsv",
        audio="results/{rec}/clean.wav",
    log:
        "results/logs/remove_claps/{rec}.log",
    benchmark:
        "results/benchmarks/remove_claps/{rec}.tsv"
    conda:
        "../../envs/animote.yaml"
    resources:
        **job_resources("remove_claps"),
    params:
        **stage("preprocess", "remove_claps"),
        claps=config["claps"],
    script:
        STAGE_SCRIPT


# The picture of what clap removal cut: a job of its own, so the chunks (and the landmarks after
# them) need not wait for matplotlib.
rule clap_picture:
    input:
        audio="results/{rec}/audio.wav",
        cuts="results/{rec}/claps.tsv",
    output:
        report(
            "results/{rec}/claps.png",
            caption="../report/claps.rst",
            category="Preprocessing",
            labels={"recording": "{rec}", "figure": "claps"},
        ),
    log:
        "results/logs/clap_picture/{rec}.log",
    benchmark:
        "results/benchmarks/clap_picture/{rec}.tsv"
    conda:
        "../../envs/animote.yaml"
    resources:
        **job_resources("clap_picture"),
    params:
        **stage("preprocess", "clap_picture"),
        claps=config["claps"],
    script:
        STAGE_SCRIPT


rule split_chunks:
    input:
        info="results/{rec}/probe.json",
        video="results/{rec}/video.mp4",
        audio="results/{rec}/clean.wav",
        kept="results/{rec}/kept.tsv",
    output:
        directory("results/{rec}/chunks"),
    log:
        "results/logs/split_chunks/{rec}.log",
    benchmark:
        "results/benchmarks/split_chunks/{rec}.tsv"
    conda:
        "../../envs/animote.yaml"
    resources:
        **job_resources("split_chunks"),
    params:
        **stage("preprocess", "split_chunks"),
        chunks=config["chunks"],
    script:
        STAGE_SCRIPT


rule preprocess_report:
    input:
        info=expand("results/{rec}/probe.json", rec=RECORDINGS.index),
        cuts=expand("results/{rec}/claps.tsv", rec=RECORDINGS.index),
        chunks=expand("results/{rec}/chunks", rec=RECORDINGS.index),
    output:
        "results/report/preprocess.tsv",
    log:
        "results/logs/preprocess_report/report.log",
    benchmark:
        "results/benchmarks/preprocess_report/report.tsv"
    conda:
        "../../envs/animote.yaml"
    resources:
        **job_resources("preprocess_report"),
    params:
        **stage("preprocess", "preprocess_report"),
        recordings=list(RECORDINGS.index),
    script:
        STAGE_SCRIPT
