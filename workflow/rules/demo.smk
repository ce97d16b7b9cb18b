rule demo_recording:
    output:
        video="results/demo/demo.mp4",
        truth="results/demo/truth.tsv",
        events="results/demo/events.json",
    params:
        code=code_version("demo"),  # the stage's library code
        demo=config["demo"],
    resources:
        **job_resources("demo_recording"),
    log:
        "results/logs/demo_recording/demo.log",
    benchmark:
        "results/benchmarks/demo_recording/demo.tsv"
    conda:
        "../../envs/animote.yaml"
    script:
        "../scripts/demo_recording.py"
