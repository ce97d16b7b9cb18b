from animote.stages.mesh import align_recording
from animote.util import logged

with logged(snakemake.log[0]):
    align_recording(snakemake.input.meshes, snakemake.input.neutral, snakemake.output[0])
