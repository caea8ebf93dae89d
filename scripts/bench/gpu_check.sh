#!/usr/bin/env bash
# GPU check, < 4 minutes: `vaelab-train trainer=gpu` end to end (synthetic, then MNIST), then the loop cases of
# the benchmark suite on the GPU (data resident on the device), each step under a time limit.
#
#   scripts/bench/gpu_check.sh OUT_DIR DATA_DIR [DEPS_DIR]
#
# OUT_DIR receives at most 8 files: summary.txt (GPU, each step's exit code and seconds), one log per step,
# bench.json + bench.md (the GPU loop table) and the two runs' metrics.json. DATA_DIR holds mnist/. On a
# machine without hydra/omegaconf, DEPS_DIR/site (default .gpu_deps/site) is put on PYTHONPATH: copy the
# pure-Python packages hydra, omegaconf and antlr4 there from a machine that has them.
set -u
OUT=${1:?usage: gpu_check.sh OUT_DIR DATA_DIR [DEPS_DIR]}
DATA=${2:?usage: gpu_check.sh OUT_DIR DATA_DIR [DEPS_DIR]}
DEPS=${3:-.gpu_deps}
RUNS=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
python3 -c "import hydra, omegaconf" 2>/dev/null || export PYTHONPATH="$PWD/$DEPS/site${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/summary.txt" 2>&1
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)" \
  >> "$OUT/summary.txt" 2>&1

step() {  # step NAME LIMIT_S COMMAND...: runs it with a time limit, log in $OUT/NAME.log
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  echo "$name: exit $rc in $(( $(date +%s) - start )) s (limit $limit s)" | tee -a "$OUT/summary.txt"
  tail -n 4 "$OUT/$name.log"
  return $rc
}

python3 -c "import vaelab.train" 2>/dev/null || {
  step install 60 python3 -m pip install --no-deps --no-build-isolation --no-index . && rm -f "$OUT/install.log"; }
step train_synthetic_gpu 45 python3 -m vaelab.train trainer=gpu trainer.max_epochs=50 \
  callbacks.progress_bar=null "hydra.run.dir=$RUNS/synthetic"
cp "$RUNS/synthetic/metrics.json" "$OUT/synthetic_metrics.json" 2>/dev/null
step train_mnist_gpu 60 env VAELAB_DATA_DIR="$DATA" python3 -m vaelab.train experiment=vae_mnist trainer=gpu \
  trainer.max_epochs=2 trainer.check_val_every_n_epoch=1 callbacks.diagnostics.every_n_epochs=1 \
  callbacks.progress_bar=null "hydra.run.dir=$RUNS/mnist"
cp "$RUNS/mnist/metrics.json" "$OUT/mnist_metrics.json" 2>/dev/null
# the loop cases at 0.3x their CPU epochs, 2 timed repetitions each
step bench_gpu 170 python3 scripts/bench/run.py --device cuda --out "$OUT" --data-dir "$DATA" --scale 0.3 --reps 2
grep "^| loop" "$OUT/bench.md" 2>/dev/null
rm -rf "$RUNS"
