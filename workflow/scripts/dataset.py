from animote.stages.dataset import build_dataset
from animote.util import logged

with logged(snakemake.log[0]):
    build_dataset(snakemake.input.aligned, snakemake.input.neutral,
                  {"phonetic": snakemake.input.phonetic, "emotion": snakemake.input.emotion},
                  snakemake.params.roles, snakemake.params.dataset, snakemake.output[0])
