from animote.config import ClapParams
from animote.stages.preprocess import remove_claps
from animote.util import logged

with logged(snakemake.log[0]):
    remove_claps(snakemake.input.info, snakemake.input.audio, snakemake.wildcards.rec,
                 ClapParams(**snakemake.params.claps),
                 snakemake.output.cuts, snakemake.output.kept, snakemake.output.audio)
