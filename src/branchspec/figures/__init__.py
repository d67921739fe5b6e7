"""Figures like the paper's, drawn from saved result files only (STYLE habit 7).

One module per part: toy, hessian, classifier (§6 analyses and sweeps), classifier_epochs (§6 per epoch of
training), decomposition, gan, apps / apps_batch and tracking; shared helpers in
:mod:`branchspec.figures.common`. Split from the single ``figures.py`` of the starting layout because each
part's plots alone pass a few hundred lines.
"""
