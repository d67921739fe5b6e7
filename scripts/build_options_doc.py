"""Write docs/options.md: every option of every command that has a config, generated from its config class.

    python scripts/build_options_doc.py [--check]

``--check`` exits 1 when the committed page differs from what the configs generate (the test suite runs it).
"""

from __future__ import annotations

import sys
from pathlib import Path

from branchspec.options import markdown_table
from branchspec.classifier.config import TrainConfig
from branchspec.experiments import apps, classifier, demo, gan, hessian, toy
from branchspec.gan.config import GanTrainConfig

PAGE = Path(__file__).resolve().parents[1] / "docs" / "options.md"
# (command, its config class, where the class lives), in the order of `branchspec --help`
COMMANDS = [
    ("demo", demo.Demo, "branchspec.experiments.demo"),
    ("toy", toy.Config, "branchspec.experiments.toy"),
    ("hessian", hessian.Config, "branchspec.experiments.hessian"),
    ("train-classifier", TrainConfig, "branchspec.classifier.config"),
    ("analyze-classifier", classifier.Analysis, "branchspec.experiments.classifier"),
    ("train-gan", GanTrainConfig, "branchspec.gan.config"),
    ("decompose", gan.Decompose, "branchspec.experiments.gan"),
    ("manipulate", apps.Manipulate, "branchspec.experiments.apps"),
    ("segment", apps.Segment, "branchspec.experiments.apps"),
]


def page() -> str:
    parts = ["# Options of the commands\n\nGenerated from the config classes by `python scripts/build_options_doc.py`: "
             "each option is defined once, as a config field (default, help, validation), and the flags are generated "
             "from it. Every command's `--config FILE` sets any of its options from TOML / JSON (keys: the field names "
             "a run records in its config.json / experiment.json, e.g. `num_branches` for `--branches`), flags given "
             "override it. "
             "Departures from the paper's objective are marked. The run-control flags (`--out`, `--threads`, "
             "`--resume`, …) are not part of a config; `branchspec COMMAND --help` lists them too.\n"]
    for command, cls, where in COMMANDS:
        parts.append(f"\n## `branchspec {command}` (`{where}.{cls.__name__}`)\n\n" + markdown_table(cls))
    return "".join(parts)


def main() -> int:
    text = page()
    if "--check" in sys.argv:
        return 0 if PAGE.is_file() and PAGE.read_text() == text else 1
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
