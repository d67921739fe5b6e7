"""Component profiles (apps.profiles) against explicit loops on constructed components."""

import cmath
import math

import numpy as np
import pytest

from branchspec.apps.profiles import (
    DependenceSums, ProfileStats, chroma_fraction, input_dependence, energy_share, frequency_centroid, profile_components, spatial_entropy,
    transfer_change,
)


def centroid_loop(v):
    """Direct DFT by four nested loops, radial frequency from the bin index."""
    c, h, w = v.shape
    num = den = 0.0
    for u in range(h):
        for k in range(w):
            p = 0.0
            for ch in range(c):
                s = sum(v[ch, a, b] * cmath.exp(-2j * math.pi * (u * a / h + k * b / w)) for a in range(h) for b in range(w))
                p += abs(s) ** 2
            fu = u / h if u < (h + 1) // 2 else u / h - 1  # signed frequency, as fftfreq
            fk = k / w if k < (w + 1) // 2 else k / w - 1
            num += p * math.hypot(fu, fk)
            den += p
    return num / den


def chroma_loop(v):
    c, h, w = v.shape
    tot = chroma = 0.0
    for a in range(h):
        for b in range(w):
            m = sum(v[ch, a, b] for ch in range(c)) / c
            for ch in range(c):
                tot += v[ch, a, b] ** 2
                chroma += (v[ch, a, b] - m) ** 2
    return chroma / tot


def entropy_loop(v):
    c, h, w = v.shape
    e = [[sum(v[ch, a, b] ** 2 for ch in range(c)) for b in range(w)] for a in range(h)]
    tot = sum(map(sum, e))
    ent = 0.0
    for row in e:
        for val in row:
            if val > 0:
                ent -= val / tot * math.log(val / tot)
    return ent / math.log(h * w)


def _components():
    yy, xx = np.mgrid[0:8, 0:8]
    low = np.stack([np.cos(2 * np.pi * xx / 8) + 0.5 * np.cos(2 * np.pi * yy / 8)] * 3)  # smooth, grey
    high = np.stack([(-1.0) ** (xx + yy), 0.5 * (-1.0) ** xx, 0 * xx])  # edges, coloured
    spot = np.zeros((3, 8, 8))
    spot[:, 2, 5] = [1.0, 2.0, 0.5]
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(3, 8, 8))
    return np.stack([low, high, spot, noise])  # (M=4, C, H, W)


def test_profiles_match_explicit_loops():
    v = _components()
    np.testing.assert_allclose(frequency_centroid(v), [centroid_loop(c) for c in v], rtol=1e-9)
    np.testing.assert_allclose(chroma_fraction(v), [chroma_loop(c) for c in v], rtol=1e-9)
    np.testing.assert_allclose(spatial_entropy(v), [entropy_loop(c) for c in v], rtol=1e-9, atol=1e-12)
    e = [float((c**2).sum()) for c in v]
    np.testing.assert_allclose(energy_share(v), [x / sum(e) for x in e], rtol=1e-12)


def test_expected_ordering():
    low, high, spot, noise = _components()
    f = frequency_centroid(np.stack([low, high]))
    assert f[0] < 0.2 < f[1]  # low-frequency component below high-frequency one
    ch = chroma_fraction(np.stack([low, high]))
    assert ch[0] == pytest.approx(0, abs=1e-12) and ch[1] > 0.5  # grey vs coloured
    ent = spatial_entropy(np.stack([spot, noise, low]))
    assert ent[0] == pytest.approx(0, abs=1e-12) and ent[0] < ent[1] and ent[1] > 0.8  # concentrated vs spread


def test_profile_stats_and_transfer_change():
    v = _components()
    s = ProfileStats()
    s.add(v)
    s.add(2 * v)
    r = s.result()
    assert r["frequency_centroid"] == pytest.approx(frequency_centroid(v).tolist())  # scale-free profiles
    assert r["energy_share"] == pytest.approx(energy_share(v).tolist())
    assert set(profile_components(v)) == set(r)
    ch = transfer_change(v, v + np.arange(4.0)[:, None, None, None])  # branch k shifted by k everywhere
    assert ch.tolist() == pytest.approx([0.0, 192.0, 4 * 192.0, 9 * 192.0])


def test_input_dependence_loop_and_extremes():
    """Template branch -> 0, zero-mean image-driven branch -> 1, a loop for a mixture; streaming sums agree."""
    rng = np.random.default_rng(1)
    n = 6
    template = np.broadcast_to(rng.normal(size=(3, 4, 4)), (n, 3, 4, 4))  # the same on every image
    driven = rng.normal(size=(n, 3, 4, 4))
    driven -= driven.mean(axis=0)  # zero mean over images
    mixed = template + 0.5 * driven
    v = np.stack([template, driven, mixed, np.zeros((n, 3, 4, 4))])  # (M=4, N, C, H, W)
    dep = input_dependence(v)
    assert dep[0] == pytest.approx(0, abs=1e-12) and dep[1] == pytest.approx(1) and dep[3] == 0
    mean = sum(mixed[i] for i in range(n)) / n
    loop = sum(float(((mixed[i] - mean) ** 2).sum()) for i in range(n)) / sum(float((mixed[i] ** 2).sum()) for i in range(n))
    assert dep[2] == pytest.approx(loop)
    # streamed in two batches and two targets (the second target: the same components + a per-target offset)
    sums = DependenceSums()
    sums.add(0, v[:, :2]), sums.add(0, v[:, 2:]), sums.add(1, v + 1.0)
    other = input_dependence(v + 1.0)
    tot0, tot1 = (v**2).sum(axis=(1, 2, 3, 4)), ((v + 1.0) ** 2).sum(axis=(1, 2, 3, 4))
    np.testing.assert_allclose(sums.result(), (dep * tot0 + other * tot1) / (tot0 + tot1), rtol=1e-9, atol=1e-12)
