#!/usr/bin/env bash
# One lease of the GPU machine (`device`, 15 minutes in all) spent on the measurements that
# need it, in one command:
#   1. benchmarks/train_throughput.py on CUDA (issue 14's GPU figures), alone on the card;
#   2. cells of the fang2023 side-by-side table (issue 11) in parallel "lanes", each a list
#      of variant:endpoint:seed cells run one after another with
#      `python -m admet.benchmark fang2023 --seeds 1 --seed-offset SEED`, each lane writing
#      its own run folder, on the GPU or on a set of the machine's 16 CPU cores (taskset).
#      MODEL is the folder `python -m admet.hpo refit` wrote or its exported config; the
#      chemprop lanes take its members and epochs.
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
# Seen on 2026-11-27 (H200 host, 16 cores): three CPU lanes of 5 cores (all 5 members at once,
# one thread each) finished no cell in 490 s; here a member takes about 380 s on one core
# (1,140 s for three rounds of two members), so CPU lanes do not fit a lease. Chemprop's CLI needs the real
# astartes (its train/val split): gpu-pack's stand-in stops it, so add `astartes tabulate`
# to gpu-pack's extra wheels.
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
# GPU_SESSION_THROUGHPUT="--models default --batch-sizes 64" narrows the throughput cells,
# GPU_SESSION_THROUGHPUT_SECONDS=0 skips them.
read -r -a more_throughput <<< "${GPU_SESSION_THROUGHPUT:-}"
if [ "${GPU_SESSION_DRY:-0}" = 1 ]; then
  extra+=(data.max_molecules=200 optimization.max_epochs=1 ensemble.n_members=2)
  throughput=(--device cpu --models tiny --batch-sizes 64 --epochs 1 --max-molecules 300)
fi

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; nproc --all; } > "$out/machine.txt"
t0=$(date +%s)
if [ "${GPU_SESSION_THROUGHPUT_SECONDS:-150}" -gt 0 ]; then
  timeout -k 5 "${GPU_SESSION_THROUGHPUT_SECONDS:-150}" python3 benchmarks/train_throughput.py \
    "${throughput[@]}" "${more_throughput[@]}" --json "$out/throughput.json" \
    > "$out/throughput.log" 2>&1
  echo "throughput: exit $? after $(( $(date +%s) - t0 )) s"
  grep -v -i warn "$out/throughput.log" | tail -12
fi

start=$(date +%s)
lane() {  # lane NAME PLACE CELL... (PLACE = gpu[:CORES] or cpu:CORES, CORES for taskset;
  local name=$1 place=$2; shift 2  # CELL = variant:endpoint:seed)
  local run=() opts=(ensemble.n_jobs=2)
  if [ "${place%%:*}" = gpu ] && [ "$place" != gpu ]; then run=(taskset -c "${place#gpu:}"); fi
  if [ "${place%%:*}" = cpu ]; then
    # a CPU lane: its own cores, one thread per member, every member at once
    local cores=${place#cpu:}
    run=(env CUDA_VISIBLE_DEVICES= taskset -c "$cores")
    # GNU nproc honours OMP_NUM_THREADS, hence env -u
    opts=(optimization.accelerator=cpu "ensemble.n_jobs=$(taskset -c "$cores" env -u OMP_NUM_THREADS nproc)")
  fi
  for cell in "$@"; do
    IFS=: read -r variant endpoint seed <<< "$cell"
    local now=$(( $(date +%s) - start ))
    if [ "$now" -ge "$soft" ]; then echo "$name: no time for $cell"; continue; fi
    timeout -k 5 $(( hard - now )) "${run[@]}" python3 -m admet.benchmark fang2023 --config "$model" \
      --processed "$processed" --out "$out/lanes/$name" --variants "$variant" \
      --endpoints "$endpoint" --seeds 1 --seed-offset "$seed" --quiet "${extra[@]}" "${opts[@]}"
    echo "$name: $cell ($place) exit $? at $(( $(date +%s) - start )) s"
  done
}

# Lanes (NAME PLACE CELL...), separated by ';'. The default: one of ours (two member
# processes) and one Chemprop CLI process on the GPU, each with its own cores (see above).
lanes=${GPU_SESSION_LANES:-"G1 gpu:0-3 joint:HLM:0 joint:RLM:0; G2 gpu:4-7 chemprop:HLM:0 chemprop:RLM:0"}
IFS=';' read -r -a specs <<< "$(echo "$lanes" | tr '\n' ' ')"
for spec in "${specs[@]}"; do
  read -r -a words <<< "$spec"
  [ "${#words[@]}" -ge 3 ] || continue
  lane "${words[@]}" > "$out/lanes/${words[0]}.log" 2>&1 &
done
wait
pkill -f chemprop.cli.main 2>/dev/null
echo "lanes: $(( $(date +%s) - start )) s"
grep -h "exit\|no time" "$out"/lanes/*.log
cat "$out"/lanes/*/cells.jsonl 2>/dev/null | wc -l | sed 's/^/cells finished: /'
tar czf "$(dirname "$out")/session.tgz" -C "$out" . && rm -rf "$out"
