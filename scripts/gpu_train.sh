#!/usr/bin/env bash
# One command for a CUDA machine (torch only; no compressai or constriction needed):
# train from the packed data files, freeze to integer weights, write both to OUT.
#
#   make pack                                      # here: .pack/train-1.npz, train-2.npz (<= 50 MB each)
#   (one call per part, carrying .pack/train-K.npz: the machine keeps the earlier ones)
#   bash scripts/gpu_train.sh "$OUT" --minutes 20  # there, once every part has arrived
#
# Extra arguments go to bbcodec.train.train (e.g. --N 384 --M 64 --steps 40000).
# BBCODEC_INIT=weights/NAME-<sha8>.npz continues from shipped weights (unfrozen to a
# checkpoint; a larger --M grows the latents) instead of starting from scratch.
# OUT receives run/ckpt.pt, run/train.log and NAME-<sha8>.npz.
set -euo pipefail
out=${1:?usage: scripts/gpu_train.sh OUT_DIR [train args]}
shift
name=${BBCODEC_NAME:-bb8-n192m128}
data=${BBCODEC_DATA:-.pack}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
init=()
if [ -n "${BBCODEC_INIT:-}" ]; then
    python -m bbcodec.train.unfreeze "$BBCODEC_INIT" "$out/init.pt"
    init=(--init "$out/init.pt")
fi
PYTHONUNBUFFERED=1 python -m bbcodec.train.train --data "$data" --out "$out/run" --amp --batch 16 \
    --lr 3e-4 --lr-final 1e-5 --acl 2 --acl-from 4000 --ckpt-every 500 "${init[@]}" "$@"
python -m bbcodec.train.freeze "$out/run/ckpt.pt" --calib "$data" --name "$name" --out "$out"
