# Landmarks, one job per recording: a folder with a store per chunk (cNNN.zarr). The job tracks
# mesh.workers chunks at once (its threads), each worker a process that loads MediaPipe once.
rule face_mesh:
    input:
        chunks="results/{rec}/chunks",
        info="results/{rec}/probe.json",
    output:
        directory("results/{rec}/mesh"),
    params:
        code=code_version("mesh"),  # the stage's library code
        mesh=config["mesh"]["tracking"],
    threads: config["mesh"]["workers"]
    resources:
        **job_resources("face_mesh"),
    log:
        "results/logs/face_mesh/{rec}.log",
    benchmark:
        "results/benchmarks/face_mesh/{rec}.tsv"
    conda:
        "../../envs/animote.yaml"
    script:
        "../scripts/face_mesh.py"


rule neutral_mesh:
    input:
        unpack(neutral_inputs),
    output:
        directory("results/{rec}/neutral.zarr"),
    params:
        code=code_version("mesh"),  # the stage's library code
        mesh=config["mesh"]["neutral"],
        image=neutral_image,
    resources:
        **job_resources("neutral_mesh"),
    log:
        "results/logs/neutral_mesh/{rec}.log",
    benchmark:
        "results/benchmarks/neutral_mesh/{rec}.tsv"
    conda:
        "../../envs/animote.yaml"
    script:
        "../scripts/neutral_mesh.py"


# Head pose removed, one job per recording: a folder with a store per chunk (cNNN.zarr); the fit
# takes a fraction of a second per chunk, a job's start-up a second.
rule align_mesh:
    input:
        meshes="results/{rec}/mesh",
        neutral="results/{rec}/neutral.zarr",
    output:
        directory("results/{rec}/aligned"),
    params:
        code=code_version("mesh"),  # the stage's library code
    resources:
        **job_resources("align_mesh"),
    log:
        "results/logs/align_mesh/{rec}.log",
    benchmark:
        "results/benchmarks/align_mesh/{rec}.tsv"
    conda:
        "../../envs/animote.yaml"
    script:
        "../scripts/align_mesh.py"


rule mesh_report:
    input:
        meshes="results/{rec}/mesh",
        aligned="results/{rec}/aligned",
        neutral="results/{rec}/neutral.zarr",
        chunks="results/{rec}/chunks",
        info="results/{rec}/probe.json",
    output:
        summary="results/{rec}/mesh_summary.tsv",
        preview="results/{rec}/mesh_preview.png",
    params:
        code=code_version("mesh"),  # the stage's library code
    resources:
        **job_resources("mesh_report"),
    log:
        "results/logs/mesh_report/{rec}.log",
    benchmark:
        "results/benchmarks/mesh_report/{rec}.tsv"
    conda:
        "../../envs/animote.yaml"
    script:
        "../scripts/mesh_report.py"
