"""Applications of a branched generator's decomposition (paper §7, App. A, App. F).

* :mod:`branchspec.apps.decompose` — one pass f, v, R = G(x, y): the
  ambient-space components of an image, saved as ``.npz`` (Figs. 10–11);
* :mod:`branchspec.apps.manipulation` — α-sweeps, subset sums and gains
  (App. A, Figs. 13–15);
* :mod:`branchspec.apps.augment` — random component gains as data
  augmentation (§7, "random channel perturbations");
* :mod:`branchspec.apps.segmentation` — Chan–Vese segmentation of cats'
  eyes from components (App. F, Figs. 12, 21).
"""
