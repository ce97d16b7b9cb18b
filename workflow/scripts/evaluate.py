from animote.stages.evaluate import evaluate_experiment
from animote.util import logged

with logged(snakemake.log[0]):
    evaluate_experiment(snakemake.input.dataset, snakemake.input.model, snakemake.input.run,
                        snakemake.params.chunk_dirs, snakemake.params.evaluate, snakemake.wildcards.exp,
                        dict(snakemake.output.items()), snakemake.threads)
