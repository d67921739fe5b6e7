"""PSNR/SSIM of EMA re-generation (own domain) and of R alone vs the input, on held-out and training images.

Used for the tables in docs/gan.md (image-folder runs trained with --holdout):
    PYTHONPATH=src python docs/gan_eval_snippet.py RUN/checkpoints/step-001000
The package's own evaluation is in the decomposition part.
"""
import sys, json, torch, numpy as np
torch.set_num_threads(1)
from skimage.metrics import peak_signal_noise_ratio as psnr, structural_similarity as ssim
from branchspec.loading import load_model
from branchspec.data.folders import load_image_folders
ckpt = sys.argv[1]
g, st = load_model(ckpt)
data = load_image_folders(st["train_config"]["data"], st["img_size"], progress=False)
held = set(st["held_out"]["files"]) if st.get("held_out") else set()
mask = torch.tensor([f in held for f in data.files])
def scores(idx):
    x, y = data.batch(idx)
    with torch.no_grad():
        f, v, r = g.forward_all(x, y)
    def to01(t): return ((t.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    X, F, R = to01(x), to01(f), to01(r)
    out = {}
    for name, A in (("regen", F), ("R", R)):
        out[name + "_psnr"] = float(np.mean([psnr(X[i], A[i], data_range=1) for i in range(len(X))]))
        out[name + "_ssim"] = float(np.mean([ssim(X[i], A[i], data_range=1, channel_axis=2) for i in range(len(X))]))
    V = v.flatten(2)  # (M, B, D)
    V = V - V.mean(-1, keepdim=True)
    V = V / V.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    C = torch.einsum("mbd,nbd->bmn", V, V).mean(0)  # (M, M) mean per-image correlation
    M = C.shape[0]
    out["mean_abs_offdiag_corr"] = float((C.abs().sum() - C.diagonal().abs().sum()) / (M * M - M))
    out["n"] = len(idx)
    return out
res = {"step": st["step"], "held_out": scores(torch.nonzero(mask).flatten()), "train": scores(torch.nonzero(~mask).flatten())}
print(json.dumps(res, indent=1))
