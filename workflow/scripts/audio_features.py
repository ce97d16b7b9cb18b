from animote.stages.features import features_chunk
from animote.util import logged

with logged(snakemake.log[0]):
    features_chunk(snakemake.input.chunks, snakemake.wildcards.chunk, snakemake.params.spec, snakemake.output[0])
