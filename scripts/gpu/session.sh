#!/bin/bash
# One GPU lease for issues #10 and #11, as two device calls on one warm machine.
#
#   bash scripts/gpu/session.sh calibrate   # call 1, carries .gpu/p1 (CIFAR-10 batches 1-2 + test, AFHQ/CelebA minis)
#   bash scripts/gpu/session.sh main        # call 2, carries .gpu/p2 (CIFAR-10 batches 3-5), right after call 1
#
# calibrate: unpacks the data (lossless, SHA-256 checked: scripts/gpu/pack_data.py), times the real trainers
# alone (classifier M = 16 and 32, GAN 32² and 256² in fp32 and bf16), runs `benchmarks/run.py cuda`, and
# writes $W/plan.json: the epochs and precisions main uses, from those timings.
# main: trains, all at once on the one GPU until a deadline: the M sweep {2,4,8,16,32} on all 50,000
# CIFAR-10 training images (its M = 16 run is the shipped model), M = 16 with 10x weight decay (the
# silent-branch mechanism of issue #10), the CIFAR cat/dog/deer/horse GAN at 32² (run 4's recipe, longer),
# and the 256² GAN on the AFHQ-layout folder (issue #11 item 7); then exports weights-only copies and packs
# everything into at most 8 files under $OUT. Env: SMOKE=1 runs it all tiny on the CPU (to test this script).
set -u
MODE=${1:?calibrate or main}
source scripts/gpu/common.sh

if [ "$MODE" = calibrate ]; then
  env_report
  python3 scripts/gpu/pack_data.py unpack .gpu/p1/cifar "$W/cifar" >> "$OUT/session.log" 2>&1 || log "UNPACK p1 FAILED"
  cp -r .gpu/p1/afhq-mini .gpu/p1/celeba-hq-mini "$W/" 2>/dev/null
  mkdir -p "$W/cal"  # timing only: batches 1,2 stand in for 3..5 (removed by main)
  for i in 1 2 3 4 5; do ln -sf "$W/cifar/data_batch_$(( (i + 1) % 2 + 1 ))" "$W/cal/data_batch_$i"; done
  ln -sf "$W/cifar/test_batch" "$W/cal/test_batch"; ln -sf "$W/cifar/batches.meta" "$W/cal/batches.meta"
  SUB=25600; STEPS32=60; STEPS256=20; [ "$SMOKE" = 1 ] && { SUB=256; STEPS32=4; STEPS256=2; }
  for m in 16 32; do
    rm -rf "$W/t-c$m"
    timeout 60 "${BS[@]}" train-classifier --data "$W/cal" --out "$W/t-c$m" --branches $m --subset $SUB --epochs 1 "${CLF[@]}" \
      >> "$OUT/session.log" 2>&1 || log "classifier M=$m timing run failed (rc $?)"
    log "classifier M=$m alone: $(ips_of "$W/t-c$m") images/s"
  done
  if [ "${QUICK:-0}" = 0 ]; then  # QUICK=1: the classifier timings only (a second lease reuses the first's GAN ones)
  rm -rf "$W/t-g32"
  timeout 60 "${BS[@]}" train-gan --data "$W/cal:cat,dog,deer,horse" --img-size 32 --steps $STEPS32 "${GAN[@]}" \
    --sample-every 0 --ckpt-every 0 --out "$W/t-g32" >> "$OUT/session.log" 2>&1 || log "GAN 32 timing failed (rc $?)"
  log "GAN 32² alone: $(gan_rate "$W/t-g32") steps/s"
  for p in fp32 bf16; do
    rm -rf "$W/t-g256-$p"
    timeout 75 "${BS[@]}" train-gan --data "$W/afhq-mini" --img-size 256 --steps $STEPS256 --precision $p "${GAN[@]}" \
      --sample-every 0 --ckpt-every 0 --out "$W/t-g256-$p" >> "$OUT/session.log" 2>&1 || log "GAN 256 $p timing failed (rc $?)"
    log "GAN 256² $p alone: $(gan_rate "$W/t-g256-$p") steps/s"
  done
  [ "$SMOKE" = 1 ] || timeout 70 python3 benchmarks/run.py cuda --json "$OUT/bench.json" > "$OUT/bench.md" 2>&1 \
    || log "benchmarks stopped (rc $?)"
  fi
  python3 scripts/gpu/rates.py plan "$W" "$SMOKE" | tee -a "$OUT/session.log"
  cp "$W/plan.json" "$OUT/" 2>/dev/null
  log "calibrate done"
  exit 0
fi

# ---------------------------------------------------------------- main
P() { python3 -c "import json; print(json.load(open('$W/plan.json'))['$1'])"; }
E=$(P epochs); SUBSET=$(P subset); PREC256=$(P gan256_precision); TRAIN_S=$(P train_s)
SUBARG=(); [ "$SUBSET" != 0 ] && SUBARG=(--subset "$SUBSET")
python3 scripts/gpu/pack_data.py unpack .gpu/p2/cifar "$W/cifar" >> "$OUT/session.log" 2>&1 || log "UNPACK p2 FAILED"
rm -rf "$W/cal" "$W"/t-*
DEADLINE=$(( $(date +%s) + TRAIN_S ))
left() { echo $(( DEADLINE - $(date +%s) )); }
log "main: $E epochs, 256² GAN in $PREC256, training until +$(( DEADLINE - T0 ))s"
setsid timeout "$(left)" "${BS[@]}" train-classifier --data "$W/cifar" --out "$W/sweep" --sweep 2,4,8,16,32 --sweep-procs 5 \
  --epochs "$E" "${SUBARG[@]}" "${CLF[@]}" --save-every 100 > "$W/sweep.log" 2>&1 &
PIDS=($!)
setsid timeout "$(left)" "${BS[@]}" train-classifier --data "$W/cifar" --out "$W/m16-wd0.5" --branches 16 --weight-decay 0.5 \
  --epochs "$E" "${SUBARG[@]}" "${CLF[@]}" --save-every 100 > "$W/m16-wd.log" 2>&1 &
PIDS+=($!)
setsid timeout "$(left)" "${BS[@]}" train-gan --data "$W/cifar:cat,dog,deer,horse" --img-size 32 --steps 200000 "${GAN[@]}" --batch-size 32 \
  --sample-every 2000 --ckpt-every 500 --keep-last 1 --out "$W/gan32" > "$W/gan32.log" 2>&1 &
PIDS+=($!)
setsid timeout "$(left)" "${BS[@]}" train-gan --data "$W/afhq-mini" --img-size 256 --steps 200000 --precision "$PREC256" "${GAN[@]}" \
  --sample-every 200 --ckpt-every 100 --keep-last 1 --out "$W/gan256" > "$W/gan256.log" 2>&1 &
PIDS+=($!)
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do
  sleep 20
  log "running $(jobs -rp | wc -l); sweep M16/M32 epochs $(cat "$W/sweep/M16/metrics.csv" 2>/dev/null | wc -l)/$(cat "$W/sweep/M32/metrics.csv" 2>/dev/null | wc -l) (+1 header); gan32 step $(tail -1 "$W/gan32/log.jsonl" 2>/dev/null | cut -c1-16); gan256 step $(tail -1 "$W/gan256/log.jsonl" 2>/dev/null | cut -c1-16)"
done
wait
for p in "${PIDS[@]}"; do kill -- "-$p" 2>/dev/null; done; sleep 2  # each job is its own process group: the sweep's workers too
log "training over; exporting"
X="$W/export"; mkdir -p "$X"
python3 - "$W" "$X" <<'EOF' >> "$OUT/session.log" 2>&1
import sys
from branchspec.train.export import export_weights
w, x = sys.argv[1:]
for r in ("sweep/M16/last", "sweep/M16/ema", "m16-wd0.5/last", "sweep/M32/last", "gan32/checkpoints/last",
          "gan256/checkpoints/last"):
    try:
        print("exported", export_weights(f"{w}/{r}", f"{x}/{r.replace('/', '-')}"))
    except Exception as exc:  # a run that never checkpointed: say so, pack the rest
        print("no export of", r, exc)
EOF
cd "$W" || exit 1
cp "$OUT/session.log" "$W/session.log"
tar czf "$OUT/results.tgz" --exclude='*.safetensors' --exclude='checkpoints' --exclude='export' --exclude='cifar' \
  --exclude='afhq-mini' --exclude='celeba-hq-mini' . 2>/dev/null
tar cf "$OUT/m16.tar" -C "$X" $(cd "$X" && ls sweep-M16-* 2>/dev/null)
tar cf "$OUT/wd-gan32.tar" -C "$X" $(cd "$X" && ls m16-wd0.5-last.* gan32-* 2>/dev/null)
tar cf "$OUT/m32.tar" -C "$X" $(cd "$X" && ls sweep-M32-* 2>/dev/null)
[ -e "$X/gan256-checkpoints-last.safetensors" ] && split -b 15M "$X/gan256-checkpoints-last.safetensors" "$OUT/gan256.st.part-" \
  && cp "$X/gan256-checkpoints-last.json" "$OUT/gan256.json"
ls -la "$OUT" | tee -a "$OUT/session.log"
log "main done"
