# Landmarks, one job per recording: a folder with a store per chunk (cNNN.zarr). The job tracks
# mesh.workers chunks at once (its threads), each worker a process that loads MediaPipe once.
rule face_mesh:
    input:
        chunks="results/{rec}/chunks",
        info="results/{rec}/probe.json",
    output:
        directory("results/{rec}/mesh"),
    log:
        "results/logs/face_mesh/{rec}.log",
    benchmark:
        "results/benchmarks/face_mesh/{rec}.tsv"
    conda:
        "../../envs/animote.yaml"
    threads: config["mesh"]["workers"]
    resources:
        **job_resources("face_mesh"),
    params:
        **stage("mesh", "face_mesh"),
        mesh=config["mesh"]["tracking"],
        tracker=config["mesh"]["tracker"],
    script:
        STAGE_SCRIPT


# After the landmarks, one job per recording: the neutral mesh, head pose removed from every chunk
# (a folder with a store per chunk, cNNN.zarr), and the summary with its picture. Each step takes
# about as long as a job's start-up, and all three rerun together anyway (the same code, and the
# neutral mesh feeds the other two), so one process does them one after another.
rule align_mesh:
    input:
        unpack(neutral_inputs),
        info="results/{rec}/probe.json",
    output:
        neutral=directory("results/{rec}/neutral.zarr"),
        aligned=directory("results/{rec}/aligned"),
        summary="results/{rec}/mesh_summary.tsv",
        preview="results/{rec}/mesh_preview.png",
    log:
        "results/logs/align_mesh/{rec}.log",
    benchmark:
        "results/benchmarks/align_mesh/{rec}.tsv"
    conda:
        "../../envs/animote.yaml"
    resources:
        **job_resources("align_mesh"),
    params:
        **stage("mesh", "align_mesh"),
        mesh=config["mesh"]["neutral"],
        image=neutral_image,
    script:
        STAGE_SCRIPT
