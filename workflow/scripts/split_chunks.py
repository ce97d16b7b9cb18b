from animote.config import ChunkParams
from animote.stages.preprocess import split_chunks
from animote.util import logged

with logged(snakemake.log[0]):
    split_chunks(snakemake.input.info, snakemake.input.video, snakemake.input.audio, snakemake.input.kept,
                 snakemake.wildcards.rec, ChunkParams(**snakemake.params.chunks),
                 snakemake.output[0])
