#!/usr/bin/env bash
# One lease of the GPU machine (`device`, 15 minutes in all) spent on the measurements that
# need it, in one command:
#   1. benchmarks/train_throughput.py on CUDA (issue 14's GPU figures), alone on the card;
#   2. cells of the fang2023 side-by-side table (issue 11) in parallel "lanes": one process
#      per lane, each a list of variant:endpoint:seed cells run one after another with
#      `python -m admet.benchmark fang2023 --seeds 1 --seed-offset SEED`, each lane writing
#      its own run folder. MODEL is the folder `python -m admet.hpo refit` wrote (only its
#      config.yaml needs to travel); the chemprop lanes take its members and epochs.
# A lane starts no cell after SOFT seconds and is killed at HARD seconds, so the lease ends
# on time; everything comes back as $OUT/session.tgz. Back here: append the lanes'
# cells.jsonl lines to one run folder and write the table with
# `python -m admet.benchmark fang2023 --config MODEL --out RUN --report ...`.
#
#   source .gpu-site/activate.sh && bash benchmarks/gpu_session.sh MODEL [SOFT] [HARD]
#
# GPU_SESSION_DRY=1 rehearses the same plan on the CPU with tiny models.
# Seen on 2026-11-27 (H200): 8 lanes of 2 member processes each (16 CUDA processes
# time-slicing one GPU, no MPS) finished no 5-member x 30-epoch cell in 320 s, while one
# process alone trains about 4,600 molecules/s; plan few lanes (benchmarks/results/fang2023.md).
set -u
model=${1:?usage: gpu_session.sh MODEL [SOFT] [HARD]}
soft=${2:-230}
hard=${3:-380}
out=${OUT:-/tmp/gpu-session-out}/session
mkdir -p "$out/lanes"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
processed=${GPU_SESSION_PROCESSED:-.gpu-site/processed}
extra=(mlflow.enabled=false)
throughput=(--device cuda --models tiny,default --batch-sizes 64,32,128 --epochs 3)
# GPU_SESSION_THROUGHPUT="--models default --batch-sizes 64" narrows the throughput cells;
# GPU_SESSION_PLAN=first: seed 0 only (joint and chemprop on every endpoint, baseline on the
# PPB pair), members two at a time (ensemble.n_jobs=2), for a short lease
read -r -a more_throughput <<< "${GPU_SESSION_THROUGHPUT:-}"
plan=${GPU_SESSION_PLAN:-full}
if [ "${GPU_SESSION_DRY:-0}" = 1 ]; then
  extra+=(data.max_molecules=200 optimization.max_epochs=1 ensemble.n_members=2)
  throughput=(--device cpu --models tiny --batch-sizes 64 --epochs 1 --max-molecules 300)
fi

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; nproc --all; } > "$out/machine.txt"
t0=$(date +%s)
timeout -k 5 "${GPU_SESSION_THROUGHPUT_SECONDS:-150}" python3 benchmarks/train_throughput.py \
  "${throughput[@]}" "${more_throughput[@]}" --json "$out/throughput.json" \
  > "$out/throughput.log" 2>&1
echo "throughput: exit $? after $(( $(date +%s) - t0 )) s"
grep -v -i warn "$out/throughput.log" | tail -12

start=$(date +%s)
lane() {  # lane NAME CONFIG CELL... (CELL = variant:endpoint:seed)
  local name=$1 cfg=$2; shift 2
  for cell in "$@"; do
    IFS=: read -r variant endpoint seed <<< "$cell"
    local now=$(( $(date +%s) - start ))
    if [ "$now" -ge "$soft" ]; then echo "$name: no time for $cell"; continue; fi
    timeout -k 5 $(( hard - now )) python3 -m admet.benchmark fang2023 --config "$cfg" \
      --processed "$processed" --out "$out/lanes/$name" --variants "$variant" \
      --endpoints "$endpoint" --seeds 1 --seed-offset "$seed" --quiet "${extra[@]}"
    echo "$name: $cell exit $? at $(( $(date +%s) - start )) s"
  done
}

for e in HLM RLM MDR1_ER Sol hPPB rPPB; do
  lane "chemprop-$e" "$model" "chemprop:$e:0" > "$out/lanes/chemprop-$e.log" 2>&1 &
done
if [ "$plan" = first ]; then
  extra+=(ensemble.n_jobs=2)
  for e in HLM RLM MDR1_ER Sol hPPB rPPB; do lane "J-$e" "$model" "joint:$e:0" > "$out/lanes/J-$e.log" 2>&1 & done
  for e in hPPB rPPB; do lane "B-$e" "$model" "baseline:$e:0" > "$out/lanes/B-$e.log" 2>&1 & done
  wait
fi
full_lanes=(  # NAME CELL...: each lane runs its cells one after another
  "J1 joint:HLM:0 joint:hPPB:1" "J2 joint:RLM:0 joint:rPPB:1" "J3 joint:MDR1_ER:0 joint:hPPB:2"
  "J4 joint:Sol:0 joint:rPPB:2" "J5 joint:hPPB:0" "J6 joint:rPPB:0"
  "B1 baseline:hPPB:0 baseline:HLM:0" "B2 baseline:rPPB:0 baseline:RLM:0"
  "B3 baseline:hPPB:1 baseline:MDR1_ER:0" "B4 baseline:rPPB:1 baseline:Sol:0"
  "B5 baseline:hPPB:2" "B6 baseline:rPPB:2"
)
if [ "$plan" = full ]; then
  for spec in "${full_lanes[@]}"; do
    read -r -a cells <<< "$spec"
    lane "${cells[0]}" "$model" "${cells[@]:1}" > "$out/lanes/${cells[0]}.log" 2>&1 &
  done
fi
wait
pkill -f chemprop.cli.main 2>/dev/null
echo "lanes: $(( $(date +%s) - start )) s"
grep -h "exit\|no time" "$out"/lanes/*.log
cat "$out"/lanes/*/cells.jsonl 2>/dev/null | wc -l | sed 's/^/cells finished: /'
tar czf "$(dirname "$out")/session.tgz" -C "$out" . && rm -rf "$out"
