"""Build the API reference, HTML generated from the docstrings of branchspec's public modules (pdoc).

    pip install -e ".[docs]"
    python scripts/build_api_docs.py                 # -> docs/api/index.html (not committed; rebuild on demand)
    python scripts/build_api_docs.py --out DIR

It documents the checked-out source (``src/`` goes first on ``sys.path``), so the pages match the code beside
them. The reference says what each function does; dated measurements stay in docs/notebook/.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# `branchspec` walks the sub-packages its __all__ names (metrics, hessian, parts); the rest are the public
# modules reached by path. Tests, commands, experiments and trainers are not API.
MODULES = ["branchspec", "branchspec.branched", "branchspec.loading", "branchspec.models.registry",
           "branchspec.precision", "branchspec.padding", "branchspec.errors"]


def build(out: Path) -> Path:
    """Write the reference to ``out`` (created); returns ``out/index.html``."""
    sys.path.insert(0, str(ROOT / "src"))
    import pdoc
    import pdoc.render

    pdoc.render.configure(docformat="google", footer_text="branchspec API reference (generated from docstrings)",
                          show_source=False)
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # pdoc notes names it cannot link; the pages are complete without them
        warnings.simplefilter("ignore")
        pdoc.pdoc(*MODULES, output_directory=out)
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "api", help="output folder (default docs/api)")
    index = build(p.parse_args(argv).out)
    print(f"API reference: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
