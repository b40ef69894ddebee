#!/usr/bin/env bash
# Every GPU measurement of issue 7 in ONE call of the device tool (see DEVELOPERS.md, "A session with a GPU").
#
#   here, once:   bash benchmarks/prepare_gpu_session.sh "$ORIG"        # fills .gpu/ (git-ignored)
#   device run:   command "bash benchmarks/gpu_session.sh", carry [".gpu"], timeout_s 560
#
# The parts run in order of importance; each has a time limit, and a part that would not fit in what is left of
# BUDGET seconds (default 480: the device tool allows 600 s per call and 15 min of device time per session,
# machine start included) is skipped with a line saying so, as is a part named in SKIP_PARTS (a comma list, e.g.
# SKIP_PARTS=gpu_bench_b4 when an earlier session measured it) or, when ONLY_PARTS is set, one it does not name.
# INSTALL=source runs the checkout from the source tree (PYTHONPATH and .gpu/site) instead of pip's ~50 s. Results are JSON lines and text under $OUT (the device tool brings
# them back), summary.md the tables: python3 benchmarks/gpu_summary.py $OUT rebuilds it anywhere.
# Settings of the issue: 64x64, hidden 64, 10 -> 10 frames, batch 4 (and 16), fp32, Adam, the original in the
# same process (ORIG_CUDA=1).
#
# Smoke test on a machine without a GPU (tests/test_gpu_session.py runs it with TOOLS pointing at an empty folder:
# parts whose files are missing, like the original without .gpu/, are skipped, saying so):
#   SMOKE=1 DEVICE=cpu PY=.venv/bin/python OUT=/tmp/gs bash benchmarks/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
BUDGET=${BUDGET:-480}
TOOLS=${TOOLS:-$PWD/.gpu}  # gpu_bench.py, orig_env.py, msrnn-original/, site/ (prepare_gpu_session.sh)
if [ "${SMOKE:-0}" = 1 ]; then  # tiny sizes: only that every part runs and writes what it should
  SIZE=8 HIDDEN=4 FRAMES=2 REPEAT=1 CELLS=convlstm OPTIONS=plain,bf16 MODELS="ms-convlstm" WINDOW=3 FAST=plain
  VS_MODELS="ms-convlstm" B16_MODELS="convlstm ms-convlstm" GAP_MODELS="convlstm" B16_GAP_MODELS="convlstm ms-convlstm"
  BF16_GAP_MODELS="convlstm" KERNEL_MODELS="convlstm" CELLS_BACKEND=aot_eager  # compiled cells traced, not compiled
else
  SIZE=64 HIDDEN=64 FRAMES=10 REPEAT=5 CELLS=convlstm,trajgru,predrnn,predrnn-pp,mim,motionrnn,predrnn-v2,preciplstm
  OPTIONS=${OPTIONS:-plain,clip-graph,clip-graph+channels-last,clip-graph+zero-states,channels-last,embedding}
  MODELS="ms-convlstm ms-predrnn" WINDOW=30 FAST=plain,compile
  VS_MODELS="convlstm ms-convlstm trajgru ms-trajgru predrnn ms-predrnn predrnn-pp ms-predrnn-pp mim ms-mim motionrnn
    ms-motionrnn predrnn-v2 ms-predrnn-v2"
  B16_MODELS="convlstm ms-convlstm predrnn ms-predrnn motionrnn ms-motionrnn"
  GAP_MODELS="predrnn-pp ms-predrnn-pp predrnn"  # below 2.5x in fp32; below 4x under bf16 in the third session,
  # the closest first (predrnn 3.63, convlstm 3.62, predrnn-v2 3.50, predrnn-pp 2.36; ms-predrnn-v2 met it, 4.24)
  BF16_GAP_MODELS="predrnn convlstm predrnn-v2 predrnn-pp" CELLS_BACKEND=inductor
  KERNEL_MODELS="predrnn-pp predrnn convlstm"  # the farthest from 2.5x in fp32 first
  B16_GAP_MODELS="convlstm ms-convlstm predrnn ms-predrnn"
fi
export ORIG=$TOOLS/msrnn-original PYTHONUNBUFFERED=1
[ "$DEVICE" = cuda ] && export ORIG_CUDA=1
GRAPH=$([ "$DEVICE" = cuda ] && echo clip-graph || echo none)  # CUDA graphs need a GPU; the smoke test runs plain
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1
log() { echo "== $* (${SECONDS}s)"; }

# part NAME LIMIT_S OUTFILE COMMAND...: run COMMAND for at most LIMIT_S seconds (less if BUDGET runs out),
# its output into $OUT/OUTFILE; skipped when fewer than 20 s of the budget are left.
part() {
  local name=$1 limit=$2 file=$3; shift 3
  local left=$((BUDGET - SECONDS))
  case ",${SKIP_PARTS:-}," in *",$name,"*)
    log "SKIPPED $name: named in SKIP_PARTS"; echo "$name: asked" >> "$OUT/skipped.txt"; return;;
  esac
  if [ -n "${ONLY_PARTS:-}" ]; then
    case ",$ONLY_PARTS," in *",$name,"*) ;; *)
      log "SKIPPED $name: not named in ONLY_PARTS"; echo "$name: asked" >> "$OUT/skipped.txt"; return;;
    esac
  fi
  if [ "$left" -lt 20 ]; then
    log "SKIPPED $name: ${left}s of the ${BUDGET}s budget left"; echo "$name: budget" >> "$OUT/skipped.txt"; return
  fi
  [ "$left" -lt "$limit" ] && limit=$left
  log "$name (at most ${limit}s)"
  timeout -k 5 "$limit" "$@" > "$OUT/$file"
  local rc=$?
  tail -n 25 "$OUT/$file"
  [ "$rc" = 0 ] || { log "$name ended with status $rc (124: time limit)"; echo "$name: status $rc" >> "$OUT/skipped.txt"; }
}
needs() {  # needs FILE NAME: skip part NAME (saying so) when FILE is missing
  [ -e "$1" ] && return 0
  log "SKIPPED $2: $1 is missing (run benchmarks/prepare_gpu_session.sh first)"; echo "$2: no $1" >> "$OUT/skipped.txt"
  return 1
}

log "install (no network there: no dependencies, no build isolation)"
# -P: the repository root (the working directory) must not count as an installed msrnn_zoo, and the zoo is
# ready only when its plugins' models are registered
zoo_ready() { $PY -P -c "import sys, msrnn_zoo; sys.exit(not msrnn_zoo.list_models())" 2>/dev/null; }
from_source() {
  log "running from the source tree with the entry points of .gpu/site"
  paths=$PWD:$TOOLS/site; for p in plugins/*/; do paths=$paths:$PWD/$p; done
  export PYTHONPATH=$paths${PYTHONPATH:+:$PYTHONPATH}
}
if [ "${INSTALL:-pip}" = source ] && ! zoo_ready; then  # INSTALL=source: skip pip's ~50 s
  from_source
elif [ "$DEVICE" = cuda ] && ! zoo_ready; then
  plugins=(); for p in plugins/*/; do plugins+=(-e "$p"); done
  timeout 120 $PY -m pip install -q --no-deps --no-build-isolation --no-index -e . "${plugins[@]}" \
    || log "pip could not install"
  zoo_ready || from_source
fi
$PY -P -c "import json, torch, msrnn_zoo; print(json.dumps({'torch': torch.__version__, 'models': len(msrnn_zoo.list_models()),
 'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))" | tee "$OUT/device.json"

COMMON=(--device "$DEVICE" --size "$SIZE" --hidden "$HIDDEN" --in-frames "$FRAMES" --out-frames "$FRAMES" --batch 4)
GPU_BENCH=(--device "$DEVICE" --size "$SIZE" --hidden "$HIDDEN" --inp "$FRAMES" --out "$FRAMES" --cells "$CELLS")

# 0. the whole clip recorded as CUDA graphs (fast path 'clip-graph'): its tests, then every model's training step
# and forecast beside the original, batch 4, fp32 and bf16; ms-X against X at batch 16; PrecipLSTM against PredRNN
if [ "$DEVICE" = cuda ]; then
  part clip_graph_tests 160 clip_graph_tests.txt $PY -m pytest -q -p no:cacheprovider -rfE tests/test_clip_graph.py \
    tests/test_bench.py
fi
# where the last session missed issue 7's targets: the recorded step is mostly convolutions (66-82 TFLOP/s of
# TF32, by the FLOP count), and about a fifth of it element-wise passes (launches.py --traffic, README). Both levers
# and their sum in one process beside the original, so that which pays is read from one run: compiled cells fuse
# the gate arithmetic; channels-last is the layout cuDNN's tensor-core convolutions want. fp32 first (2.5x), then
# ms-X against X at batch 16 (1.8x), then bf16 (4x, the fastest path). Training steps only: the targets are
# theirs, and a forecast's warm-up (its own compilation or recording) would take as long again
LEVERS="$GRAPH,$GRAPH+compile-cells,$GRAPH+channels-last,$GRAPH+channels-last+compile-cells"
needs "$ORIG/model.py" gaps_fp32 && part gaps_fp32 240 gaps_fp32.jsonl \
  $PY benchmarks/vs_original.py --tools "$TOOLS" "${COMMON[@]}" --repeat 3 --json --cells-backend "$CELLS_BACKEND" \
  --train-only --configs "$LEVERS" $GAP_MODELS
# (three configurations at batch 16: each keeps its recording beside the others; predrnn's activations are ~20 GiB)
part gaps_batch16 140 gaps_batch16.jsonl $PY benchmarks/options.py "${COMMON[@]}" \
  --batch 16 --repeat 3 --json --cells-backend "$CELLS_BACKEND" --train-only \
  --options "$GRAPH,$GRAPH+compile-cells,$GRAPH+channels-last+compile-cells" $B16_GAP_MODELS
needs "$ORIG/model.py" gaps_bf16 && part gaps_bf16 220 gaps_bf16.jsonl \
  $PY benchmarks/vs_original.py --tools "$TOOLS" "${COMMON[@]}" --repeat 3 --json --cells-backend "$CELLS_BACKEND" \
  --train-only --configs "$GRAPH+bf16,$GRAPH+bf16+channels-last,$GRAPH+bf16+channels-last+compile-cells" \
  $BF16_GAP_MODELS
# what the recorded step of train's default path is made of, fp32 and bf16: device time by kind of kernel
# (convolutions, layout conversions, element-wise passes, casts, ...) and how much of the step the device is busy
part kernels 90 kernels.jsonl $PY benchmarks/kernels.py "${COMMON[@]}" --repeat 3 --json \
  --configs "$GRAPH+channels-last,$GRAPH+channels-last+bf16" $KERNEL_MODELS
# PrecipLSTM with TF32 matrix products (--precision tf32), which FlexAttention's kernel uses only when PyTorch's
# float32 matmul precision allows them
part preciplstm_tf32 90 preciplstm_tf32.jsonl $PY benchmarks/options.py "${COMMON[@]}" --repeat 3 --json \
  --options "$GRAPH+tf32" predrnn preciplstm
needs "$ORIG/model.py" vs_original_graph && part vs_original_graph 200 vs_original_graph.jsonl \
  $PY benchmarks/vs_original.py --tools "$TOOLS" "${COMMON[@]}" --repeat 3 --json --fast-path "$GRAPH" $VS_MODELS
part batch16_graph 60 batch16_graph.jsonl $PY benchmarks/options.py "${COMMON[@]}" --batch 16 --repeat 3 \
  --json --options "plain,$GRAPH" $B16_MODELS
# (PrecipLSTM's plain path is the pure-PyTorch attention, 2.7 s a step on an H200: left out)
part preciplstm_graph 120 preciplstm_graph.jsonl $PY benchmarks/options.py "${COMMON[@]}" --repeat 3 --json \
  --options "$GRAPH,$GRAPH+bf16" predrnn preciplstm ms-preciplstm
# the fastest documented path: recorded clips under bf16 autocast, beside the original in fp32
needs "$ORIG/model.py" vs_original_graph_bf16 && part vs_original_graph_bf16 180 vs_original_graph_bf16.jsonl \
  $PY benchmarks/vs_original.py --tools "$TOOLS" "${COMMON[@]}" --repeat 3 --json --fast-path "$GRAPH" \
  --precision bf16 $VS_MODELS
part batch16_graph_bf16 60 batch16_graph_bf16.jsonl $PY benchmarks/options.py "${COMMON[@]}" --batch 16 \
  --repeat 3 --json --options "$GRAPH+bf16" $B16_MODELS
# 1. training step of every model, ours and the original, batch 4, fp32 (147 s measured on an H200)
needs "$TOOLS/gpu_bench.py" gpu_bench_b4 && part gpu_bench_b4 190 gpu_bench_b4.jsonl \
  $PY "$TOOLS/gpu_bench.py" "${GPU_BENCH[@]}" --batch 4 --repeat "$REPEAT" --deadline 160
# 2. the CUDA-only tests: compiled and graph-replayed steps, FlexAttention, metrics on the GPU; and that recorded
# bf16 clips see the optimizer's updates, now that the joint convolutions cast their weights once per clip
if [ "$DEVICE" = cuda ]; then
  part cuda_tests 150 tests.txt $PY -m pytest -q -p no:cacheprovider -rfE -n 8 tests/test_fast_path.py \
    tests/test_metrics.py tests/test_kernels.py::test_on_a_gpu_the_kernels_of_a_recorded_clip_are_seen \
    tests/test_clip_graph.py::test_bf16_autocast_replays_see_the_updated_weights \
    tests/test_clip_graph.py::test_a_tf32_forecast_is_recorded_apart_and_replays_tf32_products plugins/msrnn-preciplstm/tests \
    "tests/test_train.py::test_a_run_drawing_random_numbers_in_training_resumes_exactly[cuda]"
fi
# 3. fast paths and precision against the plain model: warm-up (compile, capture) and training step
part options 200 options.jsonl $PY benchmarks/options.py "${COMMON[@]}" --repeat 3 --json \
  --options "$OPTIONS" $MODELS
# 4. batch 16, ours alone: ms-X against X
needs "$TOOLS/gpu_bench.py" gpu_bench_b16 && part gpu_bench_b16 60 gpu_bench_b16.jsonl \
  $PY "$TOOLS/gpu_bench.py" "${GPU_BENCH[@]}" --batch 16 --impls ours --repeat 3 --deadline 40
# 5. PrecipLSTM with the fast path (FlexAttention on GPUs) against PredRNN: step time and warm-up
part preciplstm_fast 60 preciplstm_fast.jsonl $PY benchmarks/options.py "${COMMON[@]}" --repeat 3 --json \
  --options "$FAST" preciplstm predrnn
# 6. forecast frames per second, ours and the original
needs "$ORIG/model.py" vs_original && part vs_original 40 vs_original.jsonl \
  $PY benchmarks/vs_original.py --tools "$TOOLS" "${COMMON[@]}" --repeat 3 --json convlstm ms-convlstm predrnn ms-predrnn
# 7. activation memory with gradient checkpointing (memory_allocated; the CPU count is exact already)
part grad_checkpointing 30 grad_checkpointing.jsonl $PY benchmarks/step_time.py --grad-checkpointing \
  "${COMMON[@]}" --repeat 1 --json ms-convlstm predrnn
# 8. PrecipLSTM's local attention alone: the pure-PyTorch reference (on a GPU the samples stacked, and one
# sample at a time as on the CPU) against FlexAttention; then PrecipLSTM's eager step beside PredRNN's, which
# runs that reference (2.7 s a step on an H200 when it went one sample at a time)
part local_attention 30 local_attention.txt $PY plugins/msrnn-preciplstm/bench_local_attention.py \
  --device "$DEVICE" --size "$SIZE" --channels "$HIDDEN" --window "$WINDOW" --repeat 3 \
  --impl "$([ "$DEVICE" = cuda ] && echo all || echo ours)"
part preciplstm_eager 60 preciplstm_eager.jsonl $PY benchmarks/options.py "${COMMON[@]}" --repeat 3 --json \
  --train-only --options plain predrnn preciplstm
# 9. the eager step's joint convolutions: backward through autograd with hooks (the default), the Python
# autograd.Function, or plain cat + conv2d (keeps the concatenation); timed on the CPU only so far
part joint_conv_backward 40 joint_conv_backward.jsonl $PY benchmarks/joint_conv.py --backward "${COMMON[@]}" \
  --repeat 3 --json $([ "${SMOKE:-0}" = 1 ] && echo ms-convlstm || echo ms-predrnn-pp predrnn-v2 ms-convlstm)

$PY benchmarks/gpu_summary.py "$OUT" | tee "$OUT/summary.md"
log "done: results in $OUT"
