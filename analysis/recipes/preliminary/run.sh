#!/usr/bin/env bash
# preliminary: train vanilla VGG11 on Tiny-ImageNet-10 (one run per seed, a checkpoint per epoch),
# analyze every checkpoint (Grad-CAM + SGDrop maps, all metrics), render each run, then draw the
# seed's Fig. 1 across seeds. Run from the repository root:
#   bash analysis/recipes/preliminary/run.sh
#   DEVICE=cuda EPOCHS=40 SEEDS="0 1 2 3 4" OUT=runs/prelim bash analysis/recipes/preliminary/run.sh
# Re-running the same command continues where it stopped (finished stages are skipped).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DATA=${DATA:-tiny-imagenet:../shared/data/tiny-imagenet-10}
OUT=${OUT:-runs/preliminary}
DEVICE=${DEVICE:-auto}
EPOCHS=${EPOCHS:-30}
SEEDS=${SEEDS:-0 1 2}
WORKERS=${WORKERS:-0}              # data-loader processes (4-8 on a GPU machine)
TRAIN_ARGS=${TRAIN_ARGS:-}         # extra `overfocus train` options, e.g. "--set optim.lr=3e-4"
ANALYZE_ARGS=${ANALYZE_ARGS:-}     # extra `overfocus analyze` options, e.g. "--epochs 0:30:2"
RENDER_ARGS=${RENDER_ARGS:-}       # extra `overfocus render` options, e.g. "--size 480"
source "$HERE/../lib.sh"
mkdir -p "$OUT"

runs=()
for seed in $SEEDS; do
    run=$OUT/vanilla/seed$seed
    train_run "$run" "$DATA" none "$seed" -- --config "$HERE/config.yaml" --data "$DATA" \
        --device "$DEVICE" --epochs "$EPOCHS" --seed "$seed" --set data.num_workers="$WORKERS" \
        $TRAIN_ARGS
    # grad_cam + sgdrop maps, every metric the data supports; only epochs not analysed yet
    timed analyze "$run" $OF analyze "$run" --methods grad_cam,sgdrop --device "$DEVICE" $ANALYZE_ARGS
    render_run "$run"
    runs+=("$run")
done

timed figures "$OUT" python3 "$ANALYSIS_DIR/make_figures.py" "${runs[@]}" --out "$OUT/figures" \
    --title "VGG11 on Tiny-ImageNet-10, vanilla"
log "done: per-run figures in $OUT/vanilla/seed*/figures, Fig. 1 in $OUT/figures, timings in $OUT/timings.tsv"
