from animote.stages.evaluate import evaluate_baseline
from animote.util import logged

with logged(snakemake.log[0]):
    evaluate_baseline(snakemake.input.dataset, snakemake.params.kind, snakemake.params.roles, snakemake.params.evaluate,
                      snakemake.output.metrics, snakemake.output.regions)
