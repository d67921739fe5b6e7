"""The API reference builds from the docstrings (scripts/build_api_docs.py, pdoc) and documents the public names."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_api_reference_builds_with_the_public_names(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_api_docs.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "index.html").exists()

    def ids(page):
        return set(re.findall(r'id="([A-Za-z_.]+)"', (tmp_path / page).read_text(encoding="utf-8")))

    assert {"Branched", "Branched.branch_outputs", "response_matrix", "Tracker", "heads"} <= ids("branchspec.html")
    assert {"heads", "experts", "groups", "contributions", "silenced", "Tracker", "Tracker.resume_at",
            "part_hessian", "ParamSlice.owner"} <= ids("branchspec/parts.html")
    assert {"response_matrix", "covariance", "activity", "gradient_factors"} <= ids("branchspec/metrics.html")
    assert {"save_model", "load_model"} <= ids("branchspec/loading.html")
    assert {"register", "build_model"} <= ids("branchspec/models/registry.html")
    assert {"exact_hessian", "probe_block_norms"} <= ids("branchspec/hessian.html")
    parts_page = (tmp_path / "branchspec/parts.html").read_text(encoding="utf-8")
    assert "qkv" in parts_page and "§4.1" in parts_page  # signatures and the docstrings' paper references
