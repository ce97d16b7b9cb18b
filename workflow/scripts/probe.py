from animote.config import VideoParams
from animote.stages.preprocess import prepare_recording
from animote.util import logged

with logged(snakemake.log[0]):
    prepare_recording(snakemake.input.video, snakemake.wildcards.rec, snakemake.output.info,
                      snakemake.output.video, snakemake.output.audio,
                      VideoParams(**snakemake.params.video), snakemake.params.sample_rate)
