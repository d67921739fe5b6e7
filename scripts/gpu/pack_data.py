"""Carry real CIFAR-10 to a GPU machine that cannot reach ../shared or the network.

The device tool moves at most 64 MiB per call, and the five CIFAR-10 training
batches are 150 MB, so this packs them *losslessly* as WebP mosaics (50 x 40
images of 32 x 32 per file, 0.55 of the raw bytes) and unpacks them there into
an ordinary ``cifar-10-batches-py`` folder (``branchspec.data.cifar`` format),
checking the SHA-256 of every batch's pixels and labels against the original.

    python scripts/gpu/pack_data.py pack ../shared/data/cifar-10-batches-py OUT data_batch_1 data_batch_2
    python scripts/gpu/pack_data.py unpack OUT DEST        # DEST/data_batch_1 ... (verified)
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from branchspec.data.cifar import META_FILE, read_batch, write_batch

ROWS, COLS = 40, 50  # images per mosaic: 2000


def _digest(images: np.ndarray, labels: np.ndarray) -> str:
    return hashlib.sha256(images.tobytes() + labels.astype(np.int64).tobytes()).hexdigest()


def pack(src: Path, out: Path, names: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / META_FILE, out / META_FILE)
    for name in names:
        images, labels = read_batch(src / name)
        n, per = len(images), ROWS * COLS
        tiles = []
        for i in range(0, n, per):
            chunk = images[i:i + per]
            pad = np.zeros((per - len(chunk), 32, 32, 3), np.uint8)
            grid = np.concatenate([chunk, pad]).reshape(ROWS, COLS, 32, 32, 3).transpose(0, 2, 1, 3, 4)
            buf = io.BytesIO()
            Image.fromarray(grid.reshape(ROWS * 32, COLS * 32, 3)).save(buf, "WEBP", lossless=True, quality=100, method=2)
            tile = f"{name}.{i // per}.webp"
            (out / tile).write_bytes(buf.getvalue())
            tiles.append(tile)
        np.save(out / f"{name}.labels.npy", labels)
        (out / f"{name}.json").write_text(json.dumps({"n": n, "tiles": tiles, "sha256": _digest(images, labels)}))
        print(name, n, "images", sum((out / t).stat().st_size for t in tiles) / images.nbytes, "of raw", flush=True)


def unpack(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / META_FILE, dest / META_FILE)
    for spec in sorted(src.glob("*.json")):
        name, info = spec.stem, json.loads(spec.read_text())
        parts = []
        for tile in info["tiles"]:
            g = np.asarray(Image.open(src / tile).convert("RGB"))
            parts.append(g.reshape(ROWS, 32, COLS, 32, 3).transpose(0, 2, 1, 3, 4).reshape(-1, 32, 32, 3))
        images = np.ascontiguousarray(np.concatenate(parts)[:info["n"]])
        labels = np.load(src / f"{name}.labels.npy")
        if _digest(images, labels) != info["sha256"]:
            sys.exit(f"unpack: {name} does not match its SHA-256; the copy is damaged")
        write_batch(dest / name, images, labels)
        print("unpacked", name, len(images), "images (SHA-256 verified)", flush=True)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "pack":
        pack(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])
    elif len(sys.argv) == 4 and sys.argv[1] == "unpack":
        unpack(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(__doc__)
