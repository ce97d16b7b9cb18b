rule demo_recording:
    output:
        video="results/demo/demo.mp4",
        truth="results/demo/truth.tsv",
        events="results/demo/events.json",
    log:
        "results/logs/demo_recording/demo.log",
    benchmark:
        "results/benchmarks/demo_recording/demo.tsv"
    conda:
        "../../envs/animote.yaml"
    resources:
        **job_resources("demo_recording"),
    params:
        **stage("demo", "demo_recording"),
        demo=config.get("demo"),  # config/demo.yaml, when the sheet lists the demo
    script:
        STAGE_SCRIPT
