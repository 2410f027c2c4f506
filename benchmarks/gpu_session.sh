#!/usr/bin/env bash
# The GPU checks of the open performance items, as one script for one short GPU session.
#
#   bash benchmarks/gpu_session.sh bench [SECONDS]   # throughput, SynFlow speed + profile, rules
#   bash benchmarks/gpu_session.sh fig6  [SECONDS]   # the paper-recipe Fig. 6 runs, most needed first
#
# Run it from the repository root on the GPU machine, with full CIFAR-10 where nbkit looks for
# it (data/cifar10-jpeg.tar.gz, or $NBKIT_DATA). Every step runs under its own time limit and
# the whole part under SECONDS (default 540), so whatever finished comes back; output goes to
# $OUT (default build/gpu), one file per step, and $OUT/log.txt says what ran and how it ended.
# Needs only torch, torchvision, numpy and tqdm (no plotting packages).
set -u
part=${1:?usage: gpu_session.sh bench|fig6 [SECONDS]}
budget=${2:-540}
out=${OUT:-build/gpu}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)
log() { echo "$*" | tee -a "$out/log.txt"; }
left() { echo $((budget - ($(date +%s) - start))); }

step() {  # step NAME LIMIT COMMAND...: run COMMAND under min(LIMIT, what is left)
  local name=$1 limit=$2
  shift 2
  local rest
  rest=$(left)
  if ((rest < 20)); then log "skip $name: the part's budget is spent"; return; fi
  ((limit > rest)) && limit=$rest
  log "== $name (limit ${limit} s): $*"
  timeout "$limit" "$@" >"$out/$name.txt" 2>&1
  log "   exit $? at $(($(date +%s) - start)) s"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$out/card.txt" 2>&1
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" >>"$out/card.txt"
log "part $part, budget $budget s, $(head -1 "$out/card.txt")"

case $part in
bench)
  # first, on this machine's torch: the whole step is one graph and trains as eager (CPU),
  # and on CUDA it is one CUDA graph (the GPU test)
  step whole_step_tests 150 python -m pytest -q -p no:cacheprovider tests/test_whole_step.py
  # item 3: SynFlow-100 against the textbook loop, and where its time goes
  step prune_speed 150 python benchmarks/prune_speed.py --device cuda --profile "$out/synflow_profile.txt"
  # item 2: one CIFAR-10 epoch, the whole step compiled, against the DataLoader pipeline
  step train_throughput 200 python benchmarks/train_throughput.py --compile step
  # item 2: the rules' whole steps against backprop's at 32 px (FA, SS, KP, SA; then WM, IA, AA)
  step rule_overhead 240 python benchmarks/rule_overhead.py --device cuda --compile --size 32 \
    --models resnet18 --json "$out/rule_overhead.json" \
    --rules feedback_alignment sign_symmetry kolen_pollack symmetric_alignment \
    weight_mirror information_alignment activation_alignment
  ;;
fig6)
  # item 4: SynFlow at 10^3 first (does the compiled step hold for a pruned model?), then the
  # paper's GraSP at 10^3, then each pruner at 10, 10^2, 10^3 (seed 0); three processes share
  # the card. Runs cut by the time limit resume from their checkpoints next time.
  sweep() {  # sweep NAME LIMIT ARGS...: the full Fig. 6 grid, selected, into $out/fig6
    local name=$1 limit=$2 runs_for=$(($(left) - 30))
    shift 2
    if ((runs_for < 60)); then log "skip $name: too little time left for a run"; return; fi
    step "$name" "$limit" python -m nbkit.experiments accuracy_vs_compression --variant full \
      --compile --no-progress --out "$out/fig6" --time-budget "$runs_for" "$@"
  }
  sweep fig6_synflow_1e3 400 --where method=synflow --where log10_rho=3 --where seed=0
  # GraSP as the paper's code ran it (T = 1), at 10^3: the paper shows 70.9 % there
  sweep fig6_grasp_paper_1e3 400 --where method=grasp_paper --where log10_rho=3 --where seed=0
  for k in 0 1 2; do
    sweep "fig6_seed0_shard$k" 100000 --where seed=0 --shard "$k/3" &
  done
  wait
  python -m nbkit.experiments collect accuracy_vs_compression --variant full --out "$out/fig6" \
    --to "$out/accuracy_vs_compression.json" >"$out/collect.txt" 2>&1
  log "collected: exit $?"
  ;;
*)
  echo "unknown part $part: use bench or fig6" >&2
  exit 2
  ;;
esac
log "done at $(($(date +%s) - start)) s"
