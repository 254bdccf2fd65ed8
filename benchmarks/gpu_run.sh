#!/usr/bin/env bash
# Every GPU check of one device session, in one command (issue 9): the benchmark, the published L_exp
# recipe through `medssl pretrain` (issue 18: sustained vol/s, identical views once against twice, the
# projected 300-epoch time), then the GPU tests, then the exported OpenBHB estimators on CUDA. Run from the repository root on the GPU machine:
#
#   bash benchmarks/gpu_run.sh OUT [PREP]     # PREP = `python tests/submit/device_check.py prepare PREP`
#
# Environment: BUDGET / HARD (gpu_bench's soft and hard limits, s), BENCH_ARGS (extra gpu_bench flags),
# RECIPE_S / RECIPE_ARGS (time limit and extra flags of bench_recipe.py, e.g. RECIPE_S=240; unset or 0: not run),
# PYTEST_S / CHECK_S / VIEWS_S (time limits of the GPU tests, the estimator check and the per-op views
# timing, s), MEDSSL_STAGE=1.
# Writes OUT/gpu.json, OUT/recipe_cuda.json, OUT/views_cuda{,_tf32}.json, OUT/server.json, OUT/medssl.json
# and OUT/logs.tar.gz (every log and the GPU tests' output): 7 files at most.
set -u
out=$1
prep=${2:-}
mkdir -p "$out"
python3 benchmarks/gpu_bench.py --out "$out" --budget "${BUDGET:-300}" --hard "${HARD:-330}" ${BENCH_ARGS:-} \
  > "$out/bench.log" 2>&1
echo "gpu_bench rc=$?"
if [ "${RECIPE_S:-0}" != 0 ]; then
  timeout "$RECIPE_S" python3 benchmarks/bench_recipe.py --device cuda --subjects 1024 --epochs 4 \
    --out "$out/recipe_cuda.json" ${RECIPE_ARGS:-} > "$out/recipe.log" 2>&1
  echo "bench_recipe rc=$?"; tail -n 1 "$out/recipe.log"
fi
# each view op alone on the GPU (batch 32 of 128^3, about the voxels of 121x145x121): where the views' time goes
timeout "${VIEWS_S:-45}" python3 benchmarks/bench_views.py --device cuda --batch 32 --size 128 --reps 5 \
  --out "$out/views_cuda.json" > "$out/views.log" 2>&1
echo "bench_views rc=$?"
timeout "${VIEWS_S:-45}" python3 benchmarks/bench_views.py --device cuda --batch 32 --size 128 --reps 5 --tf32 \
  --out "$out/views_cuda_tf32.json" >> "$out/views.log" 2>&1
echo "bench_views --tf32 rc=$?"
timeout "${PYTEST_S:-90}" python3 -m pytest -q -m gpu -p no:cacheprovider tests/methods tests/transforms tests/models tests/engine \
  > "$out/pytest_gpu.txt" 2>&1
echo "pytest -m gpu rc=$?"; tail -n 3 "$out/pytest_gpu.txt"
if [ -n "$prep" ]; then  # the server stage; MEDSSL_STAGE=1 adds the comparison with medssl's embedder
  mkdir -p "$out/npy"
  { timeout "${CHECK_S:-150}" python3 tests/submit/device_check.py server "$prep" "$out/npy" \
      && mv "$out/npy/server.json" "$out/" \
      && if [ "${MEDSSL_STAGE:-0}" = 1 ]; then
           timeout 90 python3 tests/submit/device_check.py medssl "$prep" "$out/npy" && mv "$out/npy/medssl.json" "$out/"
         fi
  } > "$out/checks.log" 2>&1
  echo "device_check rc=$?"; tail -n 8 "$out/checks.log"
  rm -rf "$out/npy"
fi
python3 - "$out/gpu.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("status", d.get("status"), "elapsed", d.get("elapsed_s"))
for k, v in d["items"].items():
    print(k, json.dumps(v)[:700])
PY
(cd "$out" && tar -czf logs.tar.gz --remove-files ./*.log ./*.txt 2>/dev/null)
