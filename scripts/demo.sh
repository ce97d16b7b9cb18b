#!/usr/bin/env bash
# Set up (if needed), then run the workflow on the embedded demo recording (config/config.yaml).
# Extra arguments go to snakemake, e.g. `scripts/demo.sh --cores 8 --resources gpu=1`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ $# -eq 0 ]; then set -- --cores all --resources gpu=1; fi
exec .venv/bin/snakemake "$@"
