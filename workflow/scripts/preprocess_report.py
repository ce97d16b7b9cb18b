from animote.stages.preprocess import frame_accounting
from animote.util import logged

with logged(snakemake.log[0]):
    frame_accounting(snakemake.params.recordings, snakemake.input.info, snakemake.input.cuts,
                     snakemake.input.chunks, snakemake.output[0])
