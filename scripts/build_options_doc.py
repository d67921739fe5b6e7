"""Write docs/options.md: every option of train-classifier and train-gan, generated from their config classes.

    python scripts/build_options_doc.py [--check]

``--check`` exits 1 when the committed page differs from what the configs generate (the test suite runs it).
"""

from __future__ import annotations

import sys
from pathlib import Path

from branchspec.options import markdown_table
from branchspec.classifier.config import TrainConfig
from branchspec.gan.config import GanTrainConfig

PAGE = Path(__file__).resolve().parents[1] / "docs" / "options.md"


def page() -> str:
    return ("# Options of the trainers\n\nGenerated from the config classes by `python scripts/build_options_doc.py`"
            " (each option is defined once, as a config field; `--config FILE` sets any of them from TOML / JSON, "
            "flags given override it). Departures from the paper's objective are marked.\n\n"
            "## `branchspec train-classifier` (`TrainConfig`)\n\n" + markdown_table(TrainConfig)
            + "\n## `branchspec train-gan` (`GanTrainConfig`)\n\n" + markdown_table(GanTrainConfig))


def main() -> int:
    text = page()
    if "--check" in sys.argv:
        return 0 if PAGE.is_file() and PAGE.read_text() == text else 1
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
