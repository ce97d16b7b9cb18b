from animote.stages.mesh import align_chunk
from animote.util import logged

with logged(snakemake.log[0]):
    align_chunk(snakemake.input.mesh, snakemake.input.neutral, snakemake.output[0])
