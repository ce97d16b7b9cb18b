# Every rule's script: the rule's function in the stage module its params name (animote.stages).
from animote.stages import run_job

run_job(snakemake)
