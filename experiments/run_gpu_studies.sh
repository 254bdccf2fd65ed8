#!/usr/bin/env bash
# The three gpu-scale studies (issue 17) in one budget on one H100/H200: regression, then transfer, then
# sensitivity, each given a share of the minutes left (45 %, then 55 % of the rest, then the rest). Inside a
# study, runs that would not fit are skipped and listed in its summary.md (medssl study --budget-minutes);
# a study still running 90 s past its budget is stopped. Run from the repository root:
#
#   bash experiments/run_gpu_studies.sh OUT [TOTAL_MINUTES=10]
#
# On a device machine without monai/nibabel/nilearn, install the carried wheels first (benchmarks/README.md).
# Writes OUT/studies.log and OUT/gpu_studies.tar.gz (each study's summary, tables, results.json, study.yaml
# and figures: unpack into experiments/results/ and commit with the card's name).
set -u
out=${1:?output folder}; total=${2:-10}
mkdir -p "$out"
work=$(mktemp -d)
export MEDSSL_PROGRESS=0
start=$(date +%s)
left() { python3 -c "import sys; print(max(0.0, $total - ($(date +%s) - $start) / 60))"; }
for spec in regression:0.45 transfer:0.55 sensitivity:1.0; do
  study=${spec%%:*}; share=${spec##*:}
  minutes=$(python3 -c "print(round($(left) * $share, 2))")
  echo "== $study: $minutes min of $(left) left" | tee -a "$out/studies.log"
  timeout $(python3 -c "print(int($minutes * 60 + 90))") \
    python3 -m medssl.cli study "experiments/${study}_gpu.yaml" --out "$work/${study}_gpu" \
      --budget-minutes "$minutes" >> "$out/studies.log" 2>&1
  echo "== $study rc=$? after $(( $(date +%s) - start )) s" | tee -a "$out/studies.log"
  mkdir -p "$work/results/${study}_gpu"
  bash experiments/publish.sh "$work/${study}_gpu" "${study}_gpu" "$work/results" >> "$out/studies.log" 2>&1
done
tar -czf "$out/gpu_studies.tar.gz" -C "$work/results" .
echo "wrote $out/gpu_studies.tar.gz after $(( $(date +%s) - start )) s" | tee -a "$out/studies.log"
