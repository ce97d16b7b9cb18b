rule probe:
    input:
        video=recording_source,
    output:
        info="results/{rec}/probe.json",
        video="results/{rec}/video.mp4",
        audio="results/{rec}/audio.wav",
    params:
        code=code_version("preprocess"),  # the stage's library code
        video=config["video"],
        sample_rate=config["audio"]["sample_rate"],
    resources:
        **job_resources("probe"),
    log:
        "results/logs/probe/{rec}.log",
    benchmark:
        "results/benchmarks/probe/{rec}.tsv"
    conda:
        "../../envs/animote.yaml"
    script:
        "../scripts/probe.py"


rule remove_claps:
    input:
        info="results/{rec}/probe.json",
        audio="results/{rec}/audio.wav",
    output:
        cuts="results/{rec}/claps.tsv",
        kept="results/{rec}/kept.tsv",
        audio="results/{rec}/clean.wav",
    params:
        code=code_version("preprocess"),  # the stage's library code
        claps=config["claps"],
    resources:
        **job_resources("remove_claps"),
    log:
        "results/logs/remove_claps/{rec}.log",
    benchmark:
        "results/benchmarks/remove_claps/{rec}.tsv"
    conda:
        "../../envs/animote.yaml"
    script:
        "../scripts/remove_claps.py"


# The picture of what clap removal cut: a job of its own, so the chunks (and the landmarks after
# them) need not wait for matplotlib.
rule clap_picture:
    input:
        audio="results/{rec}/audio.wav",
        cuts="results/{rec}/claps.tsv",
    output:
        report("results/{rec}/claps.png", caption="../report/claps.rst", category="Preprocessing",
               labels={"recording": "{rec}", "figure": "claps"}),
    params:
        code=code_version("preprocess"),  # the stage's library code
        claps=config["claps"],
    resources:
        **job_resources("clap_picture"),
    log:
        "results/logs/clap_picture/{rec}.log",
    benchmark:
        "results/benchmarks/clap_picture/{rec}.tsv"
    conda:
        "../../envs/animote.yaml"
    script:
        "../scripts/clap_picture.py"


rule split_chunks:
    input:
        info="results/{rec}/probe.json",
        video="results/{rec}/video.mp4",
        audio="results/{rec}/clean.wav",
        kept="results/{rec}/kept.tsv",
    output:
        directory("results/{rec}/chunks"),
    params:
        code=code_version("preprocess"),  # the stage's library code
        chunks=config["chunks"],
    resources:
        **job_resources("split_chunks"),
    log:
        "results/logs/split_chunks/{rec}.log",
    benchmark:
        "results/benchmarks/split_chunks/{rec}.tsv"
    conda:
        "../../envs/animote.yaml"
    script:
        "../scripts/split_chunks.py"


rule preprocess_report:
    input:
        info=expand("results/{rec}/probe.json", rec=RECORDINGS.index),
        cuts=expand("results/{rec}/claps.tsv", rec=RECORDINGS.index),
        chunks=expand("results/{rec}/chunks", rec=RECORDINGS.index),
    output:
        "results/report/preprocess.tsv",
    params:
        code=code_version("preprocess"),  # the stage's library code
        recordings=list(RECORDINGS.index),
    resources:
        **job_resources("preprocess_report"),
    log:
        "results/logs/preprocess_report/report.log",
    conda:
        "../../envs/animote.yaml"
    script:
        "../scripts/preprocess_report.py"
