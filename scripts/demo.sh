#!/usr/bin/env bash
# Set up (if needed), then run the workflow on the embedded demo recording (config/config.yaml).
# Extra arguments go to snakemake instead of the defaults, e.g. `scripts/demo.sh --cores 8 --resources gpu=1`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ $# -eq 0 ]; then set -- --cores all; fi   # with workflow/profiles/default, which snakemake reads by itself
exec .venv/bin/snakemake "$@"
