#!/usr/bin/env bash
# architectures: does a vision transformer's attention narrow over epochs like the CNNs', and does
# SGDrop change that? Three architectures of comparable size on Tiny-ImageNet-10 at 64 px, each
# vanilla and with SGDrop, three seeds; every run analysed with Grad-CAM and the SGDrop map (the
# ViT also with attention rollout and gradient-weighted rollout) plus the faithfulness and sanity
# metrics; rendered; compared per architecture and seed; then analysis/architectures.py writes
# the onset table and the claim lines (OUT/architectures.md).
#   bash analysis/recipes/architectures/run.sh
#   DEVICE=cuda WORKERS=8 OUT=runs/architectures bash analysis/recipes/architectures/run.sh
#   DATA='builtin?classes=3&train=32&test=16' EPOCHS=2 SEEDS=0 FAITH=8 OUT=/tmp/arch \
#       bash analysis/recipes/architectures/run.sh          # a smoke run of every stage
# Re-running the same command continues where it stopped (finished stages are skipped).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONFIG=${CONFIG:-$HERE/config.yaml}
DATA=${DATA:-tiny-imagenet:../shared/data/tiny-imagenet-10}
OUT=${OUT:-runs/architectures}
DEVICE=${DEVICE:-auto}
EPOCHS=${EPOCHS:-30}
SEEDS=${SEEDS:-0 1 2}
ARCHS=${ARCHS:-vgg11 resnet18 vit}
METHODS=${METHODS:-vanilla sgdrop}
RHO=${RHO:-0.01}               # SGDrop on the CNNs: the paper's VGG / ResNet rate, element units
RHO_VIT=${RHO_VIT:-0.05}       # SGDrop on the ViT: tokens as units (granularity=spatial), 4 of 64 (ours)
WORKERS=${WORKERS:-0}
FAITH=${FAITH:-64}             # images of the faithfulness and sanity metrics per epoch
LIMIT=${LIMIT:-0}              # images analysed per epoch (0 = the whole test split)
TRAIN_ARGS=${TRAIN_ARGS:-}     # extra `overfocus train` options for every run
ANALYZE_ARGS=${ANALYZE_ARGS:-} # extra `overfocus analyze` options, e.g. "--epochs 0:31:2"
RENDER_ARGS=${RENDER_ARGS:-}
COMPARE_ARGS=${COMPARE_ARGS:-}
source "$HERE/../lib.sh"
mkdir -p "$OUT"

# arch_args ARCH: the `overfocus train` options of an architecture (about 0.7-0.8 M parameters each).
arch_args() {
    case $1 in
        vgg11) echo "--set model.name=vgg11 --set model.width=0.25 --set model.small_input=true" \
                    "--set model.batch_norm=false --set optim.name=adam --set optim.lr=0.001" ;;
        resnet18) echo "--set model.name=resnet18 --set model.width=0.25 --set model.small_input=true" \
                       "--set optim.name=adam --set optim.lr=0.001" ;;
        vit) echo "--set model.name=vit_tiny --set model.width=0.375 --set model.small_input=false" ;;
        *) echo "unknown architecture $1 (vgg11, resnet18, vit)" >&2; return 2 ;;
    esac
}

# method_args ARCH METHOD: the regularizer name, then its --set options.
method_args() {
    case $2 in
        vanilla) echo "none --set regularizer.name=none" ;;
        sgdrop) if [[ $1 == vit ]]; then
                    echo "sgdrop --set regularizer.name=sgdrop --set regularizer.rho=$RHO_VIT" \
                         "--set regularizer.granularity=spatial"
                else
                    echo "sgdrop --set regularizer.name=sgdrop --set regularizer.rho=$RHO"
                fi ;;
        *) echo "unknown method $2 (vanilla, sgdrop)" >&2; return 2 ;;
    esac
}

# maps ARCH: the attribution methods analysed.
maps() {
    if [[ $1 == vit ]]; then echo "grad_cam,sgdrop,attention_rollout,grad_rollout"; else echo "grad_cam,sgdrop"; fi
}

extra=()
[[ $LIMIT != 0 ]] && extra+=(--limit "$LIMIT")
read -ra method_list <<<"$METHODS"
labels=$(IFS=,; echo "${method_list[*]}")
all_runs=()
for arch in $ARCHS; do
    model_sets=$(arch_args "$arch")
    for seed in $SEEDS; do
        seed_runs=()
        for method in "${method_list[@]}"; do
            read -r reg sets <<<"$(method_args "$arch" "$method")"
            run=$OUT/$arch/$method/seed$seed
            # shellcheck disable=SC2086  # option lists
            train_run "$run" "$DATA" "$reg" "$seed" -- --config "$CONFIG" --data "$DATA" --device "$DEVICE" \
                --epochs "$EPOCHS" --seed "$seed" --set data.num_workers="$WORKERS" $model_sets $sets $TRAIN_ARGS
            # shellcheck disable=SC2086
            timed analyze "$run" $OF analyze "$run" --methods "$(maps "$arch")" --faithfulness-images "$FAITH" \
                --sanity cascade --device "$DEVICE" "${extra[@]}" $ANALYZE_ARGS
            render_run "$run"
            seed_runs+=("$run")
        done
        all_runs+=("${seed_runs[@]}")
        if ((${#seed_runs[@]} > 1)); then
            # shellcheck disable=SC2086
            timed compare "$OUT/compare/$arch/seed$seed" $OF compare "${seed_runs[@]}" --labels "$labels" \
                --method grad_cam --out "$OUT/compare/$arch/seed$seed" $COMPARE_ARGS
        fi
    done
done

timed architectures "$OUT" python3 "$ANALYSIS_DIR/architectures.py" "${all_runs[@]}" --vit vit \
    --out "$OUT/architectures.md"
log "done: $OUT/architectures.md, $OUT/compare/ARCH/seed*, each run's figures/, timings in $OUT/timings.tsv"
