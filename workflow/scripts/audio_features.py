from animote.stages.features import features_recording
from animote.util import logged

with logged(snakemake.log[0]):
    features_recording(snakemake.input.chunks, snakemake.params.spec, snakemake.output[0],
                       workers=snakemake.threads)
