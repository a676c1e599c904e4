#!/usr/bin/env bash
# GPU checks in one go (about 6 minutes on one H100 before the step settings were added; those are
# not timed there yet): the GPU tests, the throughput benchmark
# for both backbones (fp32, bf16, torch.compile), the step settings side by side (images/s, MFU,
# one and 4 processes), and the digits demo on the GPU.
# Usage: OUT=results_dir bash benchmarks/gpu_check.sh   (uses python3 from PATH; no install)
set -o pipefail
OUT=${OUT:-gpu_check_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD/src:$PYTHONPATH PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
py=${PYTHON:-python3}
nvidia-smi -L | tee "$OUT/device.txt"
$py -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$OUT/device.txt"
$py -m pytest -q -x tests/ssl 2>&1 | tail -15 | tee "$OUT/tests.txt"
$py benchmarks/pretrain_throughput.py --device cuda --backbone cnn7 --width 16 --batch-size 256 --workers 8 \
    --steps 20 --rounds 3 --warmup 3 --bf16 --json "$OUT/bench_cnn7.json" 2>&1 | tee "$OUT/bench_cnn7.txt"
$py benchmarks/pretrain_throughput.py --device cuda --backbone resnet18 --batch-size 512 --workers 8 \
    --steps 10 --rounds 3 --warmup 3 --bf16 --compile --json "$OUT/bench_resnet18.json" 2>&1 | tee "$OUT/bench_resnet18.txt"
$py benchmarks/step_settings.py --device cuda --backbone resnet18 --batch-size 512 --steps 20 --rounds 3 --warmup 5 \
    --procs 1,4 --variant before=compile:false,memory_format:channels_last --variant default=compile:auto,memory_format:auto \
    --variant contiguous=compile:auto,memory_format:contiguous --variant batch1024=batch_size:1024 \
    --json "$OUT/step_settings.json" 2>&1 | tee "$OUT/step_settings.txt"
s=$SECONDS; $py -m poisonedencoder demo --device cuda --out /tmp/demo_gpu --cache-dir /tmp/pe_cache 2>&1 \
    | tail -12 | tee "$OUT/demo_gpu.txt"; echo "demo wall $((SECONDS - s)) s" | tee -a "$OUT/demo_gpu.txt"
cp /tmp/demo_gpu/metrics.json "$OUT/demo_gpu_metrics.json" 2>/dev/null
