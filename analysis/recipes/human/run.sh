#!/usr/bin/env bash
# human: harmonization (Fel et al. 2022) of the table recipe's runs with OSIE human fixation maps.
# Each run's last checkpoint explains the 150 OSIE photographs for its PREDICTED class (OSIE's
# scenes are not ImageNet classes); the Spearman correlation of each map with the blurred human
# map goes to RUN/analysis-osie/, and the table gains a Harmonization column. Runs the table
# recipe first (which skips everything already done), with the same variables. From the repo root:
#   bash analysis/recipes/human/run.sh
#   DEVICE=cuda OUT=runs/table bash analysis/recipes/human/run.sh
#   OUT=runs/cub CONFIG=analysis/recipes/cub/config.yaml DATA=cub:../shared/data/cub-200-2011-10cls \
#       EPOCHS=60 bash analysis/recipes/human/run.sh               # the same on the cub runs
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export OUT=${OUT:-runs/table}                 # the table recipe's OUT: its runs are scored here
export DEVICE=${DEVICE:-auto}
export SEEDS=${SEEDS:-0 1 2}
export METHODS=${METHODS:-vanilla dropout sgdrop}
HUMAN=${HUMAN:-osie:../shared/data/osie-150}  # eye fixations; osie:PATH?source=mouse for mouse tracking
HUMAN_DIR=${HUMAN_DIR:-analysis-osie}        # analysis folder inside each run
TRAIN=${TRAIN:-1}                            # 0 = do not run the table recipe first
source "$HERE/../lib.sh"
mkdir -p "$OUT"

if [[ $TRAIN == 1 ]]; then
    bash "$HERE/../table/run.sh"
fi

runs=()
for seed in $SEEDS; do
    for method in $METHODS; do
        run=$OUT/$method/seed$seed
        # only the last epoch: harmonization is a property of the final model (Table 3)
        timed analyze-human "$run" $OF analyze "$run" --human "$HUMAN" --epochs "$(last_epoch "$run")" \
            --methods grad_cam,sgdrop --metrics harmonization --out "$run/$HUMAN_DIR" --device "$DEVICE"
        runs+=("$run")
    done
done

timed table "$OUT" python3 "$ANALYSIS_DIR/make_table.py" "${runs[@]}" --human "$HUMAN_DIR" \
    --out "$OUT/table.md" --csv "$OUT/table.csv"
cat "$OUT/table.md"
log "done: $OUT/table.md now has a Harmonization column; per-run numbers in $OUT/*/seed*/$HUMAN_DIR"
