#!/usr/bin/env bash
# faithfulness: is the narrowing real? The table recipe's runs (vanilla, dropout, SGDrop; BN-free
# VGG11 x0.25 on Tiny-ImageNet-10 by default) analysed again with seven attribution methods and the
# faithfulness, sanity and drift metrics, the random map as chance level; then one verdict per
# method: does attention narrow, from which epoch are the maps faithful, does the narrowing happen
# on faithful maps, does SGDrop's wider attention stay wider on faithful maps.
# Runs the table recipe first (which skips everything already done). From the repository root:
#   bash analysis/recipes/faithfulness/run.sh
#   DEVICE=cuda LIMIT=0 FAITH=256 bash analysis/recipes/faithfulness/run.sh     # everything on a GPU
# Re-running the same command continues where it stopped.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export OUT=${OUT:-runs/faithfulness}
export DEVICE=${DEVICE:-auto}
export SEEDS=${SEEDS:-0 1 2}
export METHODS=${METHODS:-vanilla dropout sgdrop}
export EPOCHS=${EPOCHS:-20}
export TRAIN_ARGS=${TRAIN_ARGS:---set model.batch_norm=false}   # the BN-free VGG
export TITLE=${TITLE:-VGG11 (no BatchNorm) on Tiny-ImageNet-10}
ATTRIBUTIONS=${ATTRIBUTIONS:-grad_cam,grad_cam_pp,hirescam,score_cam,captum:IntegratedGradients,sgdrop,random}
METHOD_ARGS=${METHOD_ARGS:-captum:IntegratedGradients.n_steps=16}   # Captum's default is 50 steps
LIMIT=${LIMIT:-0}             # images analysed per epoch (0 = the whole test split; N = N evenly spaced images)
FAITH=${FAITH:-64}            # of those, the images the faithfulness and sanity metrics use
ANALYSIS_EPOCHS=${ANALYSIS_EPOCHS:-}   # e.g. 0:21:2; empty = every epoch
FAITH_DIR=${FAITH_DIR:-analysis-faith}
TRAIN=${TRAIN:-1}             # 0 = do not run the table recipe first
source "$HERE/../lib.sh"
mkdir -p "$OUT"

if [[ $TRAIN == 1 ]]; then
    bash "$HERE/../table/run.sh"
fi

extra=()
[[ $LIMIT != 0 ]] && extra+=(--limit "$LIMIT")
[[ -n $ANALYSIS_EPOCHS ]] && extra+=(--epochs "$ANALYSIS_EPOCHS")
runs=()
for seed in $SEEDS; do
    for method in $METHODS; do
        run=$OUT/$method/seed$seed
        timed analyze-faith "$run" $OF analyze "$run" --methods "$ATTRIBUTIONS" --method-args "$METHOD_ARGS" \
            --faithfulness-images "$FAITH" --out "$run/$FAITH_DIR" --device "$DEVICE" "${extra[@]}"
        runs+=("$run")
    done
done

timed faithful-claims "$OUT" python3 "$ANALYSIS_DIR/faithful_claims.py" "${runs[@]}" --analysis "$FAITH_DIR" \
    --methods "$ATTRIBUTIONS" --out "$OUT/faithfulness.md"
log "done: $OUT/faithfulness.md, each run's $FAITH_DIR/ (render it: overfocus render RUN --analysis ...)"
