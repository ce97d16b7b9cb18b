from animote.config import ClapParams
from animote.stages.preprocess import draw_claps
from animote.util import logged

with logged(snakemake.log[0]):
    draw_claps(snakemake.input.audio, snakemake.input.cuts, snakemake.wildcards.rec,
               ClapParams(**snakemake.params.claps), snakemake.output[0])
