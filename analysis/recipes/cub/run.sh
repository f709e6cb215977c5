#!/usr/bin/env bash
# cub: the preliminary + table recipes on CUB-200-2011 (10 species) at 128 px: vanilla, dropout
# and SGDrop runs per seed, every checkpoint analysed and rendered, per-seed comparisons, the
# Table 3/4-shaped Markdown and the Fig. 1 curves (vanilla's curve is the preliminary study).
# It is the table recipe with this folder's config and CUB defaults. From the repository root:
#   bash analysis/recipes/cub/run.sh
#   DEVICE=cuda EPOCHS=100 bash analysis/recipes/cub/run.sh
# Harmonization with OSIE for these runs: see analysis/recipes/human/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CONFIG=${CONFIG:-$HERE/config.yaml}
export DATA=${DATA:-cub:../shared/data/cub-200-2011-10cls}
export OUT=${OUT:-runs/cub}
export EPOCHS=${EPOCHS:-60}
export RHO=${RHO:-0.01}                       # 328 of the 32,768 latent units at 128 px
export TITLE=${TITLE:-VGG11 on CUB-200-2011 (10 species), 128 px}
exec bash "$HERE/../table/run.sh"
