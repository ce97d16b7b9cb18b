from animote.mesh import NeutralParams
from animote.stages.mesh import align_and_report
from animote.util import logged

with logged(snakemake.log[0]):
    align_and_report(snakemake.wildcards.rec, snakemake.input.meshes, snakemake.input.chunks, snakemake.input.info,
                     snakemake.params.image, NeutralParams(**snakemake.params.mesh), snakemake.output.neutral,
                     snakemake.output.aligned, snakemake.output.summary, snakemake.output.preview)
