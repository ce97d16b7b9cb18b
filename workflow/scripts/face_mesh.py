from animote.mesh import TrackParams
from animote.stages.mesh import mesh_chunk
from animote.util import logged

with logged(snakemake.log[0]):
    mesh_chunk(snakemake.input.chunks, snakemake.wildcards.chunk, snakemake.input.info, snakemake.output[0],
               TrackParams(**snakemake.params.mesh))
