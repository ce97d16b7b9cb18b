# animote: from recordings of a person speaking to a trained audio-to-mesh model.
# Stages, in order: the demo recording, preprocessing (probe, clap removal, chunks),
# face meshes, audio features, the dataset and training per sweep experiment (MLflow),
# evaluation against baselines and the sweep's report.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/mesh.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"


onerror:
    report_failures(log)


rule all:
    input:
        final_targets(),
    default_target: True
