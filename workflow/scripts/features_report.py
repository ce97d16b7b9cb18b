from animote.stages.features import features_report
from animote.util import logged

with logged(snakemake.log[0]):
    features_report(snakemake.wildcards.rec, {"phonetic": snakemake.input.phonetic, "emotion": snakemake.input.emotion},
                    snakemake.input.chunks, snakemake.output[0])
