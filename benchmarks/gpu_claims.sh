#!/usr/bin/env bash
# The CIFAR-10 rows of the claims table on one GPU, in one command: `poisonedencoder claims` on
# configs/cifar10_gpu.yaml (CIFAR ResNet18, 200 epochs, 5,000 clean inputs, 10 targets at 3% each:
# poisoning inputs equal to 30% of the clean set, 23.1% of the pre-training set) for the arms in ARMS over SEEDS, JOBS runs at once on the device, inside BUDGET_S
# seconds; then, whatever finished, the claims table (claims.md, claims.json), the record of every
# finished run (OUT/arms/<arm>/seed_<s>/: metrics.json, config.yaml, timings, manifest; no encoders
# or images: `poisonedencoder claims --record`), the wall time of every stage of every run
# (stages.csv) and the run logs. Uses python3 from PATH; installs nothing.
#
#   python scripts/pack_cifar10.py                          # once, here: packed/cifar10 (about 32 MB) from
#                                                           # cifar10/ under the data root (--data-root or POISONEDENCODER_DATA)
#   OUT=gpu_out bash benchmarks/gpu_claims.sh               # on the GPU machine, packed/ carried along
#   OUT=dry DEVICE=cpu DATA=packed/cifar10_tiny bash benchmarks/gpu_claims.sh --set pretrain.epochs=1   # CPU dry run
#   poisonedencoder claims configs/cifar10_gpu.yaml --seeds 0,1,2 --out gpu_out --table   # anywhere: the table again
#                    # from the record, with no GPU or data (the SEEDS it ran, and any extra --set of tasks or attack)
#
#
# The campaign (CAMPAIGN set: a record folder, e.g. docs/results/claims_gpu): the next arms of the
# campaign's fixed queue that the record does not complete, in the queue's order, within BUDGET_S
# (`poisonedencoder claims --campaign`; the record's runs are checked and never run again), on
# configs/cifar10_gpu_campaign.yaml, which reads the dataset `cifar10-folder` under the data root:
# DATA must be a folder named cifar10, and its parent is handed over as --data-root (no machine's
# path enters a run's fingerprint, so records resume anywhere); ARMS is not read. Back where the
# record is tracked, one command merges what finished (checked) and rewrites the table and the document:
#
#   OUT=gpu_out CAMPAIGN=docs/results/claims_gpu bash benchmarks/gpu_claims.sh      # on the GPU machine
#   poisonedencoder claims configs/cifar10_gpu_campaign.yaml --out docs/results/claims_gpu --merge gpu_out --doc docs/CLAIMS.md
#
# The prediction and the measured times: docs/BENCHMARKS.md, "The claims rows on one GPU".
# Environment: OUT (results), ARMS (default poisonedencoder,icp,defense_large_crops), SEEDS
# (default 0,1,2), JOBS (default 4), BUDGET_S (default 500: no run starts that would end past it,
# runs still going at it are stopped; their checkpoints stay and the same command resumes them),
# DEVICE (default cuda), DATA (default packed/cifar10), RUNS (claims folder, default
# /tmp/gpu_claims_runs), CACHE (default /tmp/pe_cache), CAMPAIGN (a record folder: the campaign
# instead of ARMS). Extra arguments go to `poisonedencoder claims` (e.g. --set pretrain.epochs=1).
set -o pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${OUT:-gpu_claims_out}")
ARMS=${ARMS:-poisonedencoder,icp,defense_large_crops}; SEEDS=${SEEDS:-0,1,2}; JOBS=${JOBS:-4}
BUDGET_S=${BUDGET_S:-500}; DEVICE=${DEVICE:-cuda}; DATA=$(realpath -m "${DATA:-packed/cifar10}")
RUNS=${RUNS:-/tmp/gpu_claims_runs}; CACHE=${CACHE:-/tmp/pe_cache}; CAMPAIGN=${CAMPAIGN:-}
if [ -n "$CAMPAIGN" ]; then
    RECIPE=configs/cifar10_gpu_campaign.yaml; select=(--campaign "$CAMPAIGN")
else
    RECIPE=configs/cifar10_gpu.yaml; select=(--only "$ARMS")
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
py=${PYTHON:-python3}
# OUT is claimed as the toolkit's writers claim theirs (new or empty, or marked by an earlier call): its log,
# table and the record go there, so a folder of the user's is refused in one line, before any work
$py -c 'import sys
from poisonedencoder.core.errors import UserError
from poisonedencoder.core.folders import claim_dir
try:
    claim_dir(sys.argv[1], "OUT")
except UserError as e:
    sys.exit(f"error: {e}")' "$OUT" || exit 2
if [ ! -d "$DATA/train" ] || [ ! -d "$DATA/test" ]; then
    echo "error: $DATA/train and $DATA/test do not exist; run 'python scripts/pack_cifar10.py' and carry packed/" >&2
    exit 2
fi
if [ -n "$CAMPAIGN" ] && [ "$(basename "$DATA")" != cifar10 ]; then  # the recipe's cifar10-folder: <data root>/cifar10
    echo "error: the campaign's recipe reads cifar10/ under the data root: DATA must be a folder named cifar10, not $DATA" >&2
    exit 2
fi
log=$OUT/log.txt; : > "$log"
{ nvidia-smi -L 2>/dev/null || grep -m1 "model name" /proc/cpuinfo
  $py -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
  echo "arms: ${CAMPAIGN:+the campaign queue from }${CAMPAIGN:-$ARMS}; seeds: $SEEDS; jobs: $JOBS; budget: ${BUDGET_S}s; device: $DEVICE; data: $DATA; extra: $*"; } \
    | tee "$OUT/device.txt" | tee -a "$log"
# the data and no snapshots as defaults: an extra --set of the same key replaces one (a key set twice is refused)
# (the campaign's recipe names its dataset, cifar10-folder, and reads it under the data root: DATA's parent)
kvs=(pretrain.snapshot_every=0); root=(--data-root "$(dirname "$DATA")")
[ -n "$CAMPAIGN" ] || { kvs+=("pretrain_data.dataset=imagefolder:$DATA" "tasks=[{dataset: 'imagefolder:$DATA', num_targets: 10}]"); root=(); }
defaults=(); for kv in "${kvs[@]}"; do
    case " $* " in *" ${kv%%=*}="*) ;; *) defaults+=(--set "$kv") ;; esac
done
common=("$RECIPE" --out "$RUNS" --device "$DEVICE" --cache-dir "$CACHE" --seeds "$SEEDS" "${root[@]}" "${defaults[@]}" "$@")
start=$SECONDS
# the claims command keeps its own budget; the outer timeout is a last guard (60 s past it)
# (its progress lines on the screen; the table it prints goes to the log, the screen gets it once below)
timeout --kill-after=10 $((BUDGET_S + 60)) $py -m poisonedencoder claims "${common[@]}" "${select[@]}" \
    --jobs "$JOBS" --budget "$BUDGET_S" 2>&1 | tee -a "$log" | grep --line-buffered "^claims\|^error"
rc=${PIPESTATUS[0]}
echo "claims: exit $rc, wall $((SECONDS - start)) s" | tee -a "$log"
[ "$rc" != 2 ] || { echo "error: the claims command refused its input (its error is in $log)" >&2; exit 2; }
# whatever finished: the table (rewritten from the finished runs), every finished run's record and the
# table into OUT (what `claims --out OUT --table` rebuilds the table from), every run's stage times, the runs' logs
$py -m poisonedencoder claims "${common[@]}" --table --write > "$OUT/table.txt" 2>>"$log"
$py -m poisonedencoder claims "${common[@]}" --record "$OUT" 2>&1 | tee -a "$log"
$py benchmarks/stage_times.py "$RUNS" --csv "$OUT/stages.csv" 2>&1 | tee -a "$log"
(cd "$RUNS" && find . \( -name run.log -o -name clean.log \) -print0 | sort -z | xargs -0 tail -n 4 > "$OUT/run_logs.txt" 2>/dev/null)
grep -v "^    command:" "$OUT/table.txt" | grep -B1 -A3 "^\[reproduced\|^\[not reproduced\|^\[reproduced in part" | tee -a "$log"
[ -f "$OUT/claims.json" ] || { echo "error: no table was written; see $log" >&2; exit 1; }
[ -z "$CAMPAIGN" ] || echo "merge: poisonedencoder claims $RECIPE --out $CAMPAIGN --merge $OUT --doc docs/CLAIMS.md" | tee -a "$log"
