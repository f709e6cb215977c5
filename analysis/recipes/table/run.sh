#!/usr/bin/env bash
# table: vanilla, dropout and SGDrop runs on the same data and seeds; analyze and render each;
# compare the methods seed by seed; build the Table 3/4-shaped Markdown and the Fig. 1 curves.
# Run from the repository root:
#   bash analysis/recipes/table/run.sh
#   DEVICE=cuda WORKERS=8 SEEDS="0 1 2" OUT=runs/table bash analysis/recipes/table/run.sh
# Any registered regularizer can join: METHODS="vanilla dropout sgdrop guidance" (its defaults).
# sgdrop_remedy is SGDrop with the label-leak remedy of docs/methods.md ("The label leak"):
#   METHODS="vanilla sgdrop sgdrop_remedy" bash analysis/recipes/table/run.sh
# Re-running the same command continues where it stopped (finished stages are skipped).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONFIG=${CONFIG:-$HERE/config.yaml}          # the cub recipe passes its own
DATA=${DATA:-tiny-imagenet:../shared/data/tiny-imagenet-10}
OUT=${OUT:-runs/table}
DEVICE=${DEVICE:-auto}
EPOCHS=${EPOCHS:-30}
SEEDS=${SEEDS:-0 1 2}
METHODS=${METHODS:-vanilla dropout sgdrop}
RHO=${RHO:-0.01}                             # SGDrop drop rate (METHODS.md: 0.01 for VGG)
REMEDY=${REMEDY:---set regularizer.mask_label=predicted}  # sgdrop_remedy's options (docs/methods.md, "The label leak")
DROP_P=${DROP_P:-0.5}                        # dropout baseline at the latent layer
WORKERS=${WORKERS:-0}                        # data-loader processes (4-8 on a GPU machine)
TRAIN_ARGS=${TRAIN_ARGS:-}                   # extra `overfocus train` options, e.g. "--set data.image_size=96"
TITLE=${TITLE:-VGG11 on Tiny-ImageNet-10}
ANALYZE_ARGS=${ANALYZE_ARGS:-}               # extra `overfocus analyze` options, e.g. "--epochs 0:30:2"
RENDER_ARGS=${RENDER_ARGS:-}                 # extra `overfocus render` options
COMPARE_ARGS=${COMPARE_ARGS:-}               # extra `overfocus compare` options, e.g. "--formats mp4"
source "$HERE/../lib.sh"
mkdir -p "$OUT"

# method_args METHOD: the regularizer name, then the --set options of that method.
method_args() {
    case $1 in
        vanilla) echo "none --set regularizer.name=none" ;;
        dropout) echo "dropout --set regularizer.name=dropout --set regularizer.p=$DROP_P" ;;
        sgdrop) echo "sgdrop --set regularizer.name=sgdrop --set regularizer.rho=$RHO" ;;
        sgdrop_remedy) echo "sgdrop --set regularizer.name=sgdrop --set regularizer.rho=$RHO $REMEDY" ;;
        *) echo "$1 --set regularizer.name=$1" ;;   # any other registered method, its defaults
    esac
}

read -ra method_list <<<"$METHODS"
labels=$(IFS=,; echo "${method_list[*]}")
all_runs=()
for seed in $SEEDS; do
    seed_runs=()
    for method in "${method_list[@]}"; do
        read -r reg sets <<<"$(method_args "$method")"
        run=$OUT/$method/seed$seed
        # shellcheck disable=SC2086  # $sets and $TRAIN_ARGS are lists of options
        train_run "$run" "$DATA" "$reg" "$seed" -- --config "$CONFIG" --data "$DATA" \
            --device "$DEVICE" --epochs "$EPOCHS" --seed "$seed" --set data.num_workers="$WORKERS" \
            $sets $TRAIN_ARGS
        timed analyze "$run" $OF analyze "$run" --methods grad_cam,sgdrop --device "$DEVICE" $ANALYZE_ARGS
        render_run "$run"
        seed_runs+=("$run")
    done
    all_runs+=("${seed_runs[@]}")
    if ((${#seed_runs[@]} > 1)); then
        timed compare "$OUT/compare/seed$seed" $OF compare "${seed_runs[@]}" --labels "$labels" \
            --method grad_cam --out "$OUT/compare/seed$seed" $COMPARE_ARGS
    fi
done

timed table "$OUT" python3 "$ANALYSIS_DIR/make_table.py" "${all_runs[@]}" --out "$OUT/table.md" \
    --csv "$OUT/table.csv"
timed figures "$OUT" python3 "$ANALYSIS_DIR/make_figures.py" "${all_runs[@]}" --out "$OUT/figures" \
    --title "$TITLE"
cat "$OUT/table.md"
log "done: $OUT/table.md, $OUT/figures, $OUT/compare/seed*, timings in $OUT/timings.tsv"
