#!/usr/bin/env bash
# PoisonedEncoder on CIFAR-10 with the `gpu` preset (CIFAR ResNet18), one run per seed, in one call
# on one GPU; then the table with 95% intervals (scripts/seed_table.py). About 5 minutes per seed
# on one H200 (measured: 297-313 s, docs/DESIGN.md, "The gpu preset"), so the default BUDGET_S
# (480 s) stops after one seed; run the others in later calls with SEEDS. Uses python3 from PATH;
# installs nothing.
#
#   python scripts/pack_cifar10.py                         # once, here: packed/cifar10 (about 32 MB) from
#                                                          # cifar10/ under the data root (--data-root or POISONEDENCODER_DATA)
#   OUT=gpu_out bash benchmarks/gpu_attack.sh              # on the GPU machine, packed/ carried along
#   OUT=dry_run DEVICE=cpu SEEDS="0 1" bash benchmarks/gpu_attack.sh --set pretrain.epochs=1   # a CPU dry run
#
# Environment: OUT (results: log.txt, device.txt, summary.md, summary.json, metrics_seed<S>.json),
# SEEDS (default "0 1 2"), DEVICE (default cuda), DATA (default packed/cifar10), RUNS (run
# directories, default /tmp/gpu_attack_runs), CACHE (default /tmp/pe_cache), BUDGET_S (default 480:
# a seed is skipped when the seeds so far say it would end past this many seconds).
# Extra arguments go to every `poisonedencoder run` (e.g. --set pretrain.epochs=1).
set -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_attack_out}; mkdir -p "$OUT"
SEEDS=${SEEDS:-"0 1 2"}; DEVICE=${DEVICE:-cuda}; DATA=$(realpath -m "${DATA:-packed/cifar10}")
RUNS=${RUNS:-/tmp/gpu_attack_runs}; CACHE=${CACHE:-/tmp/pe_cache}; BUDGET_S=${BUDGET_S:-480}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
py=${PYTHON:-python3}
if [ ! -d "$DATA/train" ] || [ ! -d "$DATA/test" ]; then
    echo "error: $DATA/train and $DATA/test do not exist; run 'python scripts/pack_cifar10.py' and carry packed/" >&2
    exit 2
fi
log=$OUT/log.txt; : > "$log"
{ nvidia-smi -L 2>/dev/null || grep -m1 "model name" /proc/cpuinfo
  $py -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
  echo "seeds: $SEEDS; device: $DEVICE; data: $DATA; extra: $*"; } | tee "$OUT/device.txt" | tee -a "$log"
# the data as defaults: an extra --set of the same key replaces it (a key set twice is refused)
defaults=(); for kv in "pretrain_data.dataset=imagefolder:$DATA" "tasks=[{dataset: 'imagefolder:$DATA', num_targets: 10}]"; do
    case " $* " in *" ${kv%%=*}="*) ;; *) defaults+=(--set "$kv") ;; esac
done
start=$SECONDS; done_runs=()
for s in $SEEDS; do
    used=$((SECONDS - start)); n=${#done_runs[@]}
    if [ "$n" -gt 0 ] && [ $((used + used / n)) -gt "$BUDGET_S" ]; then
        echo "skipping seed $s: $n seed(s) took ${used}s, another would end past BUDGET_S=${BUDGET_S}s" | tee -a "$log"
        continue
    fi
    t0=$SECONDS
    $py -m poisonedencoder run configs/cifar10_gpu.yaml --device "$DEVICE" --cache-dir "$CACHE" --out "$RUNS/seed_$s" \
        --set seed="$s" "${defaults[@]}" "$@" 2>&1 | tee -a "$log"
    rc=$?
    echo "seed $s: exit $rc, wall $((SECONDS - t0)) s" | tee -a "$log"
    if [ "$rc" -eq 0 ] && [ -f "$RUNS/seed_$s/metrics.json" ]; then
        cp "$RUNS/seed_$s/metrics.json" "$OUT/metrics_seed$s.json"
        done_runs+=("$RUNS/seed_$s")
    fi
done
echo "all seeds: wall $((SECONDS - start)) s" | tee -a "$log"
if [ ${#done_runs[@]} -eq 0 ]; then echo "error: no seed finished; see $log" >&2; exit 1; fi
$py scripts/seed_table.py "${done_runs[@]}" --json "$OUT/summary.json" | tee "$OUT/summary.md" | tee -a "$log"
