from animote.mesh import TrackParams
from animote.stages.mesh import mesh_recording
from animote.util import logged

with logged(snakemake.log[0]):
    mesh_recording(snakemake.input.chunks, snakemake.input.info, snakemake.output[0],
                   TrackParams(**snakemake.params.mesh), workers=snakemake.threads, code=snakemake.params.code)
