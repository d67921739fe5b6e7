# Shared by the lease scripts (scripts/gpu/session.sh, scripts/gpu/lease2.sh): sourced, not run.
# Sets W (work folder on the GPU machine), DEV (cuda; cpu with SMOKE=1, to test a script here), OUT, T0,
# log(), BS (the branchspec command), CLF (the classifier recipe of the GPU runs), GAN (the 32² GAN recipe),
# ips_of RUN (classifier images/s) and gan_rate RUN (GAN steps/s).
W=${BS_WORK:-/root/bs}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
DEV=cuda; SMOKE=${SMOKE:-0}
PREC=bf16; [ "$SMOKE" = 1 ] && { DEV=cpu; PREC=fp32; }  # bf16 on this AVX2 CPU is 7-18x slower
mkdir -p "$W" "$OUT"
T0=$(date +%s)
log() { echo "[$(date +%T) +$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/session.log"; }
BS=(python3 -m branchspec)
CLF=(--optimizer adamw --lr 3e-3 --batch-size 512 --schedule onecycle --flip alternate --ema 0.99 --tta --engine packed --precision "$PREC"
     --device "$DEV" --threads 2 --seed 0 --quiet)
GAN=(--branches 9 --batch-size 8 --base-width 16 --max-width 64 --engine packed --device "$DEV" --threads 2
     --no-progress --seed 0)
ips_of() { python3 scripts/gpu/rates.py ips "$1"; }
gan_rate() { python3 scripts/gpu/rates.py gan "$1"; }
env_report() {  # the machine, into $OUT/env.txt and the log
  { nvidia-smi; python3 -c "import torch, sys; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))"; nproc; free -g; } > "$OUT/env.txt" 2>&1
  log "env: $(tail -4 "$OUT/env.txt" | head -1)"
}
