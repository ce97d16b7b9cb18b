from animote.stages.train import start_sweep
from animote.util import logged

with logged(snakemake.log[0]):
    start_sweep(snakemake.input[0], snakemake.wildcards.sweep, snakemake.output[0])
