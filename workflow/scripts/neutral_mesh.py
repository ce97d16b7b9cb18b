from animote.mesh import NeutralParams
from animote.stages.mesh import neutral_mesh
from animote.util import logged

with logged(snakemake.log[0]):
    neutral_mesh(snakemake.wildcards.rec, snakemake.input.meshes, snakemake.input.chunks, snakemake.params.image,
                 snakemake.output[0], NeutralParams(**snakemake.params.mesh))
