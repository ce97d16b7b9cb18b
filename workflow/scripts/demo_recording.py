from animote.demo import DemoParams, make_demo
from animote.util import logged

with logged(snakemake.log[0]):
    make_demo(snakemake.output.video, snakemake.output.truth, snakemake.output.events,
              DemoParams.from_config({"demo": snakemake.params.demo}))
