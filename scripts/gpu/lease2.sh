#!/bin/bash
# The second GPU lease (26 Nov 2026): issue #10's M = 16 run trained to the end of a longer schedule, with the
# paper's hard clamp and, beside it, the pass-inward clamp gradient (same recipe); and issue #11's 32² CIFAR
# animal GAN (run 5's recipe, batch 32) for as long as the lease allows, checkpointed every 500 steps so that
# several checkpoints can be judged. Two device calls on one warm machine:
#
#   bash scripts/gpu/lease2.sh prep          # call 1, carries .gpu/p1/cifar (batches 1-2 + test_batch)
#   TRAIN_S=450 bash scripts/gpu/lease2.sh main   # call 2, carries .gpu/p2/cifar (batches 3-5), right after
#
# prep unpacks batches 1-2 and times the three jobs *together* (so the plan needs no guess of how they share
# the GPU: the first lease's guess was 0.5 of solo speed, it kept 0.3); main derives the epochs that the
# slower classifier finishes in TRAIN_S seconds from those rates, trains, exports weights-only copies and
# packs them into at most 8 files under $OUT (64 MB in all). SMOKE=1 runs both tiny on the CPU.
set -u
MODE=${1:?prep or main}
source scripts/gpu/common.sh
SUB=25600; CKPT=500; PREP_S=100; [ "$SMOKE" = 1 ] && { SUB=1024; CKPT=5; PREP_S=400; }
JOBS=(hard pi)  # the two classifier runs: the paper's clamp, and --clamp-grad pass-inward
clf_extra() { [ "$1" = pi ] && echo --clamp-grad pass-inward; }

if [ "$MODE" = prep ]; then
  env_report
  python3 scripts/gpu/pack_data.py unpack .gpu/p1/cifar "$W/cifar" >> "$OUT/session.log" 2>&1 || log "UNPACK p1 FAILED"
  mkdir -p "$W/cal"  # timing only: batches 1,2 stand in for 3..5 (removed by main)
  for i in 1 2 3 4 5; do ln -sf "$W/cifar/data_batch_$(( (i + 1) % 2 + 1 ))" "$W/cal/data_batch_$i"; done
  ln -sf "$W/cifar/test_batch" "$W/cal/test_batch"; ln -sf "$W/cifar/batches.meta" "$W/cal/batches.meta"
  rm -rf "$W"/t-*
  setsid timeout $PREP_S "${BS[@]}" train-gan --data "$W/cal:cat,dog,deer,horse" --img-size 32 --steps 100000 "${GAN[@]}" \
    --batch-size 32 --sample-every 0 --ckpt-every 0 --out "$W/t-g32" >> "$OUT/session.log" 2>&1 &
  GPID=$!; CP=()
  for j in "${JOBS[@]}"; do
    timeout $PREP_S "${BS[@]}" train-classifier --data "$W/cal" --out "$W/t-$j" --branches 16 --subset $SUB --epochs 2 \
      "${CLF[@]}" $(clf_extra "$j") >> "$OUT/session.log" 2>&1 &
    CP+=($!)
  done
  wait "${CP[@]}"; kill -- -$GPID 2>/dev/null; wait
  python3 scripts/gpu/rates.py together "$W" | tee -a "$OUT/session.log"
  cp "$W/rates.json" "$OUT/"
  log "prep done"
  exit 0
fi

# ---------------------------------------------------------------- main
TRAIN_S=${TRAIN_S:-450}; [ "$SMOKE" = 1 ] && TRAIN_S=300
E=$(python3 -c "
import json; r = json.load(open('$W/rates.json')); ips = min(r['hard_images_s'], r['pi_images_s'])
print(1 if $SMOKE else int(max(6, min(80, 0.9 * ($TRAIN_S - 40) * ips / 50000))) if ips > 0 else 20)")
SUBARG=(); [ "$SMOKE" = 1 ] && SUBARG=(--subset 1024)
python3 scripts/gpu/pack_data.py unpack .gpu/p2/cifar "$W/cifar" >> "$OUT/session.log" 2>&1 || log "UNPACK p2 FAILED"
rm -rf "$W/cal" "$W"/t-*
log "main: $E epochs for each classifier, GAN until +$TRAIN_S s"
PIDS=()
for j in "${JOBS[@]}"; do
  setsid timeout $(( TRAIN_S + 30 )) "${BS[@]}" train-classifier --data "$W/cifar" --out "$W/m16-$j" --branches 16 --epochs "$E" \
    "${SUBARG[@]}" "${CLF[@]}" $(clf_extra "$j") --save-every 100 > "$W/m16-$j.log" 2>&1 &
  PIDS+=($!)
done
setsid timeout "$TRAIN_S" "${BS[@]}" train-gan --data "$W/cifar:cat,dog,deer,horse" --img-size 32 --steps 200000 "${GAN[@]}" \
  --batch-size 32 --sample-every 1000 --ckpt-every $CKPT --out "$W/gan32" > "$W/gan32.log" 2>&1 &
PIDS+=($!)
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do
  sleep 20
  log "running $(jobs -rp | wc -l); epochs hard/pi $(( $(cat "$W/m16-hard/metrics.csv" 2>/dev/null | wc -l) - 1 ))/$(( $(cat "$W/m16-pi/metrics.csv" 2>/dev/null | wc -l) - 1 )) of $E; gan32 $(tail -1 "$W/gan32/log.jsonl" 2>/dev/null | cut -c1-14)"
done
wait
for p in "${PIDS[@]}"; do kill -- "-$p" 2>/dev/null; done; sleep 2
log "training over; exporting"
X="$W/export"; rm -rf "$X"; mkdir -p "$X"
GANS=$(cd "$W/gan32/checkpoints" 2>/dev/null && ls -r step-*.json 2>/dev/null | sed 's/\.json$//' | tr '\n' ' ')
python3 - "$W" "$X" m16-hard/ema m16-hard/last m16-pi/ema $(for g in $GANS; do echo "gan32/checkpoints/$g"; done) <<'PY' >> "$OUT/session.log" 2>&1
import sys
from pathlib import Path
from branchspec.train.export import export_weights
w, x, runs = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
cap, total = 54e6, 0  # what comes back is 64 MB at most: the classifiers first, then the newest GAN checkpoints
for r in runs:
    try:
        dst = export_weights(f"{w}/{r}", x / r.replace("/checkpoints/", "-").replace("/", "-"))
    except Exception as exc:  # a run that never checkpointed: say so, pack the rest
        print("no export of", r, exc)
        continue
    size = sum(p.stat().st_size for p in x.glob(dst.stem + ".*"))
    if total + size > cap:
        for p in x.glob(dst.stem + ".*"):
            p.unlink()
        print("left out (size cap)", r)
        continue
    total += size
    print("exported", r, size)
PY
cd "$W" || exit 1
cp "$OUT/session.log" "$W/session.log"
tar czf "$OUT/results.tgz" --exclude='*.safetensors' --exclude='checkpoints' --exclude='export' --exclude='cifar' . 2>/dev/null
tar cf - -C "$X" . | split -b 15M - "$OUT/export.tar.part-"
ls -la "$OUT" | tee -a "$OUT/session.log"
log "main done"
