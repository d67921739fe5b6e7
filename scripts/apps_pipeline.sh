#!/usr/bin/env bash
# Real images through a trained branched class-transfer GAN (paper §7, App. A, App. F), one command:
#   decompose AFHQ cats and CelebA-HQ faces -> App. F eye segmentation on every image -> App. A sweeps and
#   subset sums -> OUT/report.html (decomposition numbers incl. the judge, eye pairs found, montages).
#
# Usage:  scripts/apps_pipeline.sh CKPT OUT [extra 'branchspec decompose' options for the cats, e.g.
#                                            --judge CLASSIFIER_CKPT --judge-data CIFAR_DIR]
# Env (defaults in brackets):
#   DATA          [<repo>/../shared/data]  holds afhq-mini/ and celeba-hq-mini/
#   CATS          [$DATA/afhq-mini/train/cat]        the cat faces (App. F counts eye pairs on these)
#   FACES         [$DATA/celeba-hq-mini/train]       human faces (female/, male/)
#   CAT_DOMAIN    [cat]  target domain for the cats (must be one of the checkpoint's domains)
#   FACE_DOMAIN   [cat]  target domain for the faces: a CIFAR-animal checkpoint has no 'face' domain, so
#                        the faces are re-generated as 'cat' unless told otherwise
#   IMG_SIZE      []     decompose at this size (default: the checkpoint's)
#   PYTHON        [python]  the interpreter (set PYTHONPATH=<worktree>/src to run a worktree's code)
# Outputs: OUT/cats, OUT/cats-segment, OUT/cats-manipulate, OUT/faces, OUT/faces-segment,
#          OUT/faces-manipulate, OUT/report.html, OUT/pipeline.log (every command run).
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,20p' "$0" >&2
  exit 2
fi
CKPT=$1; OUT=$2; shift 2
HERE=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$HERE/../shared/data}
CATS=${CATS:-$DATA/afhq-mini/train/cat}
FACES=${FACES:-$DATA/celeba-hq-mini/train}
CAT_DOMAIN=${CAT_DOMAIN:-cat}
FACE_DOMAIN=${FACE_DOMAIN:-cat}
PY=${PYTHON:-python}
SIZE=()
[ -n "${IMG_SIZE:-}" ] && SIZE=(--img-size "$IMG_SIZE")
for d in "$CATS" "$FACES"; do
  [ -d "$d" ] || { echo "apps_pipeline.sh: no such folder: $d (set CATS / FACES / DATA)" >&2; exit 2; }
done
mkdir -p "$OUT"
LOG=$OUT/pipeline.log
: > "$LOG"
bs() { echo "+ branchspec $*" | tee -a "$LOG"; "$PY" -m branchspec "$@" 2>&1 | tee -a "$LOG"; }

t0=$(date +%s)
bs decompose --checkpoint "$CKPT" "$CATS" --domain "$CAT_DOMAIN" "${SIZE[@]}" --grid-rows 8 --out "$OUT/cats" "$@"
bs segment "$OUT/cats" --out "$OUT/cats-segment"
bs manipulate "$OUT/cats" --out "$OUT/cats-manipulate"
bs decompose --checkpoint "$CKPT" "$FACES" --domain "$FACE_DOMAIN" "${SIZE[@]}" --grid-rows 8 --out "$OUT/faces"
bs segment "$OUT/faces" --out "$OUT/faces-segment"
bs manipulate "$OUT/faces" --out "$OUT/faces-manipulate"
NOTE="checkpoint $CKPT; cats: $CATS as domain '$CAT_DOMAIN'; faces: $FACES as domain '$FACE_DOMAIN'"
"$PY" -c 'import sys; from branchspec.experiments.apps_folders import write_folder_report as w; print("wrote", w(sys.argv[1], note=sys.argv[2]))' \
  "$OUT" "$NOTE" | tee -a "$LOG"
echo "apps_pipeline.sh: done in $(( $(date +%s) - t0 )) s; $NOTE" | tee -a "$LOG"
