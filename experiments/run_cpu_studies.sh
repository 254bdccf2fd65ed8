#!/usr/bin/env bash
# The three CPU-sized studies, one after the other, then their light outputs into experiments/results/.
# Each re-run resumes its study folder (finished arm x seed runs are reused).
set -euo pipefail
cd "$(dirname "$0")/.."
export MEDSSL_PROGRESS=0
for study in regression transfer sensitivity; do
  medssl study "experiments/${study}_cpu.yaml" --out "runs/studies/${study}_cpu"
  experiments/publish.sh "runs/studies/${study}_cpu" "${study}_cpu"
done
