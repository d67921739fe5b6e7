"""branchspec: branch specialisation in branched networks (Brokman & Gilboa).

The main path: data → :class:`Branched` model → per-branch outputs (M, B, …)
→ :mod:`branchspec.metrics` / :mod:`branchspec.hessian` → figures → report.
"""

from branchspec.branched import Branched, ResidualSplit

__all__ = ["Branched", "ResidualSplit"]
__version__ = "0.1.0"
