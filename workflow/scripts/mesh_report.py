from animote.stages.mesh import mesh_report
from animote.util import logged

with logged(snakemake.log[0]):
    mesh_report(snakemake.wildcards.rec, snakemake.input.meshes, snakemake.input.aligned, snakemake.input.neutral,
                snakemake.input.chunks, snakemake.input.info, snakemake.output.summary, snakemake.output.preview)
