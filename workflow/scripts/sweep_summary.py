from animote.stages.train import sweep_summary
from animote.util import logged

with logged(snakemake.log[0]):
    sweep_summary(snakemake.input.parent, list(snakemake.params.configs), snakemake.params.configs,
                  snakemake.input.runs, snakemake.input.histories, snakemake.output[0])
