#!/usr/bin/env bash
# Copy a finished study's light outputs (tables, summary, figures; no checkpoints or data) into
# experiments/results/NAME (or ROOT/NAME), for committing:
#   experiments/publish.sh runs/studies/regression_cpu regression_cpu [ROOT]
set -euo pipefail
src=${1:?study folder}; name=${2:?results name}
dest="${3:-$(dirname "$0")/results}/$name"
mkdir -p "$dest/figures"
cp "$src"/{summary.md,table.md,table.csv,runs.csv,results.json,study.yaml} "$dest/"
cp "$src"/figures/*.png "$dest/figures/"
echo "published $src -> $dest"
