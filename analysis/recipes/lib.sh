# Shared helpers of the recipes' run.sh (sourced, never run alone).
#
# Everything here is plain bash over the public `overfocus` command: a recipe does nothing a user
# could not type. The helpers only add what a long batch of runs needs: skip what is already done
# (so a killed recipe is re-run with the same command and continues), log each stage with its
# duration to "$OUT/timings.tsv", and refuse to mix runs made with another configuration.
#
# Variables read (set by the recipe before sourcing, all overridable from the environment):
#   OUT      root folder of the recipe's runs
#   DEVICE   cpu | cuda | cuda:N | auto
#   EPOCHS   total epochs of every run
#   FORCE    1 = retrain runs that exist (passes --force to `overfocus train`)
#   OVERFOCUS  the command to call (default `overfocus`, e.g. "python -m overfocus")

OF=${OVERFOCUS:-overfocus}
FORCE=${FORCE:-0}
RECIPES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ANALYSIS_DIR=$(dirname "$RECIPES_DIR")

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# timed STAGE RUN CMD...: run CMD, append "stage<TAB>run<TAB>seconds" to $OUT/timings.tsv.
timed() {
    local stage=$1 run=$2 start=$SECONDS
    shift 2
    log "$stage $run: $*"
    "$@"
    printf '%s\t%s\t%s\n' "$stage" "$run" "$((SECONDS - start))" >>"$OUT/timings.tsv"
}

# run_field RUN KEY...: print fields of RUN/run.json (dotted keys, one per line; "" if absent).
run_field() {
    python3 - "$@" <<'PY'
import json, sys
manifest = json.load(open(sys.argv[1] + "/run.json"))
for key in sys.argv[2:]:
    node = manifest
    for part in key.split("."):
        node = node.get(part, "") if isinstance(node, dict) else ""
    print(node)
PY
}

# train_run RUN DATA REG SEED -- TRAIN_ARGS...: train RUN unless it is complete with $EPOCHS
# epochs; resume it if it was interrupted or has fewer epochs. A run folder made with another
# data spec, regularizer or seed is an error (delete it, pick another OUT, or FORCE=1).
train_run() {
    local run=$1 data=$2 reg=$3 seed=$4
    shift 5
    if [[ -f $run/run.json && $FORCE != 1 ]]; then
        local fields status epochs spec name rseed
        mapfile -t fields < <(run_field "$run" status config.train.epochs config.data.spec \
            config.regularizer.name seed)
        status=${fields[0]} epochs=${fields[1]} spec=${fields[2]} name=${fields[3]} rseed=${fields[4]}
        if [[ $spec != "$data" || $name != "$reg" || $rseed != "$seed" ]]; then
            log "error: $run was made with data=$spec regularizer=$name seed=$rseed, this recipe" \
                "wants data=$data regularizer=$reg seed=$seed: delete it, use another OUT, or FORCE=1"
            return 2
        fi
        if [[ $status == complete && $epochs == "$EPOCHS" ]]; then
            log "skip $run: complete ($epochs epochs)"
            return 0
        fi
        timed resume "$run" $OF resume "$run" --epochs "$EPOCHS"
        return 0
    fi
    local force=()
    [[ $FORCE == 1 ]] && force=(--force)
    timed train "$run" $OF train "$@" --out "$run" "${force[@]}"
}

# last_epoch RUN: the last durable epoch of RUN (the highest epoch listed in its run.json).
last_epoch() {
    python3 - "$1" <<'PY'
import json, sys
epochs = [e["epoch"] for e in json.load(open(sys.argv[1] + "/run.json"))["epochs"]]
print(max(epochs))
PY
}

# render_run RUN: the per-method videos and filmstrips, then one side-by-side video. Skipped when
# both were made after the analysis last changed (a stamp in $OUT/.rendered; RERENDER=1 redoes it).
render_run() {
    local run=$1 stamp
    stamp=$OUT/.rendered/$(printf '%s' "$run" | tr '/' '_')
    if [[ ${RERENDER:-0} != 1 && -f $stamp && $stamp -nt $run/analysis/summary.csv ]]; then
        log "skip render $run: figures are newer than its analysis"
        return 0
    fi
    timed render "$run" $OF render "$run" ${RENDER_ARGS:-}
    timed render-sbs "$run" $OF render "$run" --side-by-side --formats mp4 ${RENDER_ARGS:-}
    mkdir -p "$OUT/.rendered" && touch "$stamp"
}
