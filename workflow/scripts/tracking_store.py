from animote.stages.train import init_tracking
from animote.util import logged

with logged(snakemake.log[0]):
    init_tracking(snakemake.params.mlflow, snakemake.output[0])
