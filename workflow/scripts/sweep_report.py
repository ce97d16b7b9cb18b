from animote.stages.evaluate import sweep_report
from animote.util import logged

with logged(snakemake.log[0]):
    sweep_report(snakemake.wildcards.sweep, list(snakemake.params.configs), snakemake.params.configs,
                 snakemake.params.defaults, snakemake.input.evaluations,
                 snakemake.params.baselines, snakemake.input.parent, dict(snakemake.output.items()))
