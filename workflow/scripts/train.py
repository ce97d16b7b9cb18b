from animote.stages.train import train_experiment
from animote.util import logged

with logged(snakemake.log[0]):
    train_experiment(snakemake.input.dataset, snakemake.input.parent, snakemake.wildcards.exp, snakemake.params.train,
                     snakemake.output.model, snakemake.output.run, snakemake.output.history, snakemake.output.plot)
