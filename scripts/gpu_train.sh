#!/usr/bin/env bash
# Training on a CUDA machine lent by the device tool (torch only; no compressai or
# constriction needed). A call runs at most 10 minutes and an idle machine is given back
# after 30 s, so a run longer than one call trains in the background (setsid: it outlives
# the call that started it) while later calls wait on it:
#
#   make pack   # here: .pack/train-1.npz, train-2.npz (<= 50 MB each)
#   call 1, carrying .pack/train-1.npz:  bash scripts/gpu_train.sh smoke
#   call 2, carrying .pack/train-2.npz, right after call 1 (the machine keeps part 1 while warm):
#       BBCODEC_INIT=weights/NAME.npz bash scripts/gpu_train.sh start runs/gpu --minutes 17 --batch 96
#       bash scripts/gpu_train.sh wait runs/gpu 540
#   call 3:     bash scripts/gpu_train.sh wait runs/gpu 560 && bash scripts/gpu_train.sh freeze runs/gpu "$OUT"
#
# start RUN [train args]  unfreezes BBCODEC_INIT (if set) and starts bbcodec.train.train on
#                         .pack in the background (RUN/run: checkpoint and train.log; RUN/pid)
# wait RUN SECONDS        returns when that training ends (0) or after SECONDS (1), with the
#                         log's latest lines; waits on the pid (pgrep -f would also match
#                         the very shell that runs this command: its text names the module);
#                         stop a run early with kill -- -$(cat RUN/pid) (its process group)
# freeze RUN OUT          OUT gets NAME-<sha8>.npz (BBCODEC_NAME), train.log and ema.pt (the
#                         averaged weights alone, 7 MB: files coming back are at most 16 MiB)
# smoke                   one minute at batch 32 and 96 on what .pack holds: steps/s, memory
# OUT [train args]        the older one-call form: train in the foreground, then freeze
set -euo pipefail
name=${BBCODEC_NAME:-bb8-n192m128}
data=${BBCODEC_DATA:-.pack}
py=${PYTHON:-python3}
model=(--M 128 --skip)

train() {  # RUN_DIR [args]: the one training command of every form
    local dir=$1
    shift
    local init=()
    if [ -n "${BBCODEC_INIT:-}" ] && [ ! -f "$dir/run/ckpt.pt" ]; then
        "$py" -m bbcodec.train.unfreeze "$BBCODEC_INIT" "$dir/init.pt"
        init=(--init "$dir/init.pt")
    fi
    PYTHONUNBUFFERED=1 "$py" -m bbcodec.train.train --data "$data" --out "$dir/run" "${model[@]}" --amp \
        --lr 1.5e-4 --lr-final 1e-5 --decay 0.4 --acl 2 --ckpt-every 500 --steps 1000000 "${init[@]}" "$@"
}

# train in a child shell (bash -c "$child" _ RUN_DIR [args]), for smoke's timeout and start's setsid
child="set -euo pipefail; $(declare -f train); $(declare -p data py model); train \"\$@\""

freeze() {  # RUN_DIR OUT
    mkdir -p "$2"
    cp "$1/run/train.log" "$2/"
    "$py" - "$1/run/ckpt.pt" "$2/ema.pt" <<'EOF'
import sys, torch
ck = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
torch.save({"model": ck.get("ema", ck["model"]), "cfg": ck["cfg"], "step": ck["step"]}, sys.argv[2])
print(f"{sys.argv[2]}: step {ck['step']}")
EOF
    "$py" -m bbcodec.train.freeze "$1/run/ckpt.pt" --calib "$data" --name "$name" --out "$2"
}

case "${1:?usage: scripts/gpu_train.sh smoke | start RUN [args] | wait RUN SECONDS | freeze RUN OUT | OUT [args]}" in
smoke)
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    ls -l "$data"
    for b in 32 96; do
        rm -rf "/tmp/smoke$b"
        timeout 55 bash -c "$child" _ "/tmp/smoke$b" --batch "$b" > "/tmp/smoke$b.out" 2>&1 || true
        grep "^step" "/tmp/smoke$b/run/train.log" | tail -n 2 || tail -n 20 "/tmp/smoke$b.out"
    done
    ;;
start)
    dir=${2:?start RUN [train args]}
    shift 2
    mkdir -p "$dir"
    setsid nohup bash -c "$child" _ "$dir" "$@" > "$dir/train.out" 2>&1 < /dev/null &
    echo $! > "$dir/pid"
    sleep 20
    tail -c 600 "$dir/train.out"
    ;;
wait)
    dir=${2:?wait RUN SECONDS}
    end=$((SECONDS + ${3:?wait RUN SECONDS}))
    while kill -0 "$(cat "$dir/pid")" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 5; done
    grep "^step\|^val\|^stop\|^done" "$dir/run/train.log" 2>/dev/null | awk 'NR % 8 == 0' | tail -n 12 || true
    tail -n 2 "$dir/run/train.log" 2>/dev/null || tail -n 20 "$dir/train.out"
    if kill -0 "$(cat "$dir/pid")" 2>/dev/null; then exit 1; fi
    ;;
freeze)
    freeze "${2:?freeze RUN OUT}" "${3:?freeze RUN OUT}"
    ;;
*)
    out=$1
    shift
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    train "$out" "$@"
    freeze "$out" "$out"
    ;;
esac
