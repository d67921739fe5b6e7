"""``branchspec demo`` as data: the small Configs of every experiment, on embedded data (CPU, < 10 min).

:func:`plan` lists, in order, ``Step(folder, module, config, section)``:
each step is ``module.run(config, REPORT/folder)`` and, where ``section``,
``module.section(REPORT/folder)`` — the same functions the commands call.
The sizes below are the only demo settings; ``quick`` shrinks every one to a
smoke test. Products pass between steps as files: the Hessian step reads
the toy step's M = 10 checkpoints, the apps step the GAN step's
decompositions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from branchspec.errors import ConfigError
from branchspec.experiments import apps, classifier, gan, hessian, toy
from branchspec.options import check_fields, option
from branchspec.classifier.train import TrainConfig
from branchspec.gan.config import GanTrainConfig

PARTS = ["toy", "hessian", "classifier", "decomposition", "apps"]
TOY_M = 10  # the toy model whose Hessian the demo takes


def _parts(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        raise ValueError(f"unknown part(s) {bad or text!r}; choose from {','.join(PARTS)}")
    return parts


def _shipped(text: str) -> str:
    return "" if text == "none" else str(Path(text))


@dataclass(frozen=True)
class Demo:
    """What the demo runs; each option is one ``branchspec demo`` flag (:func:`plan` takes them)."""

    quick: bool = option(False, "tiny sizes: a smoke test in well under a minute")
    parts: tuple[str, ...] = option(tuple(PARTS), "comma-separated subset of " + ",".join(PARTS), parse=_parts,
                                    default_help=",".join(PARTS))
    shipped: str | None = option(None, "folder of a shipped CIFAR-10 model (with shipped.json) whose figures the "
                                       "classifier section shows ('none': no shipped model)", parse=_shipped,
                                 default_help="checkpoints/cifar10-m16 and cifar10-m16-sgd of the source checkout, "
                                              "if the package runs from one")

    def __post_init__(self) -> None:
        check_fields(self)
        bad = [p for p in self.parts if p not in PARTS]
        if bad or not self.parts:
            raise ConfigError("parts", f"unknown part(s) {bad or list(self.parts)}; choose from {','.join(PARTS)}")
        if self.shipped and not (Path(self.shipped) / classifier.SHIPPED_FILE).is_file():
            raise ConfigError("shipped", f"no {classifier.SHIPPED_FILE} in {self.shipped}")


@dataclass(frozen=True)
class Step:
    folder: str  # under the report folder; also the section's key
    module: ModuleType  # an experiment: run(cfg, out), section(out)
    config: object
    section: bool = True


def toy_config(quick: bool) -> toy.Config:
    """Toy1 and Toy2 at the paper's size (M = 2…30, 1000 trials), or a few seconds' worth."""
    if quick:
        return toy.Config(problems=("toy1", "toy2"), branches=(2, 3, 5, 10, 20), trials=8, steps=300,
                          save_models=(TOY_M,))
    return toy.Config(problems=("toy1", "toy2"), save_models=(TOY_M,))


def hessian_config(root: Path, quick: bool, checkpoints: Path) -> hessian.Config:
    """The exact Hessian of the toy model, after training vs at initialisation (§5.2, §8)."""
    return hessian.Config(checkpoint=str(checkpoints / f"m{TOY_M}_trained"),
                          compare_checkpoint=str(checkpoints / f"m{TOY_M}_init"), params="all", batch=4,
                          probes=4 if quick else 16, label="after training", compare_label="initialisation")


def classifier_config(quick: bool, shipped: str | None = None) -> classifier.Config:
    """Slim-ResNet18 classifiers with M ∈ {2, 4, 8, 16} on the embedded digits, the M = 16 one analysed (§6).

    Width 1 on all 1,438 training digits for 8 epochs (AdamW 3e-3): measured to converge on digits (12
    epochs: test 0.939, train loss 1.944 against the floor 1.895; docs/classifier.md) within the demo's
    budget. The section also shows shipped CIFAR-10 models' saved figures: ``shipped`` (a folder with
    ``shipped.json``), or when None those of :data:`SHIPPED_CLASSIFIERS` in the source checkout if the
    package runs from one; "" shows none.
    """
    train = TrainConfig(data="digits", out="", width=1, epochs=1 if quick else 8, batch_size=64,
                        optimizer="adamw", lr=3e-3, engine="packed", subset=128 if quick else None, seed=0)
    return classifier.Config(train=train, sweep=(2, 4) if quick else (2, 4, 8, 16), resume=True,
                             training_figure=True, shipped=shipped_choice(quick, shipped),
                             analysis=classifier.Analysis(per_class=5 if quick else 20,
                                                          hessian_samples=0 if quick else 16))


def gan_config(quick: bool) -> gan.Config:
    """A small branched GAN (M = 9, Gaussian R) on crops of scikit-image's photographs, then new crops decomposed.

    Training runs in chunks (exact resume between them) until ``steps`` or the time budget.
    Training targets are the image's own domain (``same_domain=1``); the paper draws them uniformly. The
    L1 re-generation loss (``rec_weight=10``, ``train-gan --rec-weight``, not in the paper) makes the
    branches add detail to R instead of removing it (docs/gan.md run 8, docs/decompose.md).
    """
    common = dict(data="embedded", ema=0.99, same_domain=1.0, rec_weight=10.0, seed=0, engine="packed", sample_every=0,
                  ckpt_every=0, device="cpu", keep_last=1)  # keep only "last" and the newest step-*
    if quick:
        train = GanTrainConfig(img_size=16, num_branches=3, base_width=4, max_width=8, style_dim=4, d_base_width=4,
                               d_max_width=8, batch_size=2, n_per_domain=4, steps=2, **common)
        return gan.Config(train=train, run_folder="gan-run", time_budget_s=30.0, chunk=2, progress=False,
                          decompose=gan.Decompose(crops_per_domain=2, grid_per_domain=4, progress=False))
    train = GanTrainConfig(img_size=32, num_branches=9, base_width=16, max_width=64, style_dim=32, d_base_width=16,
                           d_max_width=64, batch_size=8, n_per_domain=64, steps=600, **common)
    return gan.Config(train=train, run_folder="gan-run", time_budget_s=150.0, chunk=50,
                      decompose=gan.Decompose(crops_per_domain=8, grid_per_domain=4, png_min_size=64,
                                              progress=False), shipped=shipped_generators())


SHIPPED_GENERATORS = ("gan-catdog-64", "gan-utkface-64")  # the §7 photograph models under checkpoints/


def shipped_generators() -> tuple[str, ...]:
    """The shipped photograph generators of the source checkout (those present): their figures join the
    decomposition and applications sections; the demo's own tiny GAN stays the pipeline check."""
    return tuple(f for f in (classifier.shipped_folder(n) for n in SHIPPED_GENERATORS) if f)


def apps_config(root: Path, quick: bool) -> apps.Config:
    """Manipulation, augmentation and segmentation of a cat's decomposition from the GAN step."""
    alphas = (-1.0, 0.0, 1.0, 2.0, 3.0) if quick else (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
    return apps.Config(search=str(root / "decomposition"),
                       manipulate=apps.Manipulate(alphas=alphas, subsets="thirds", gif="strongest"),
                       augment=apps.Augment(gain_range=0.5, samples=4 if quick else 6, seed=0),
                       segment=apps.Segment(), shipped=() if quick else shipped_generators())


SHIPPED_CLASSIFIERS = ("cifar10-m16", "cifar10-m16-sgd", "cifar10-m16-sgd-wd",  # §6 CIFAR-10 models in checkpoints/
                       "cifar10-m32-sgd-wd")  # (AdamW; SGD; SGD with the full decay budget, M = 16 and 32)


def shipped_choice(quick: bool, shipped: str | None) -> tuple[str, ...]:
    """The shipped-model folders the classifier section shows: given, the checkout's (None), or none."""
    if shipped is not None:
        return (shipped,) if shipped else ()
    return () if quick else tuple(f for f in map(classifier.shipped_folder, SHIPPED_CLASSIFIERS) if f)


def plan(root, quick: bool = False, parts=tuple(PARTS), shipped: str | None = None) -> list[Step]:
    """The demo's steps for ``parts`` (in :data:`PARTS` order) writing under ``root``.

    ``shipped``: see :func:`classifier_config`.
    """
    root = Path(root)
    steps = []
    for part in PARTS:
        if part not in parts:
            continue
        if part == "toy":
            steps.append(Step("toy", toy, toy_config(quick)))
        elif part == "hessian":
            ck = root / "toy" / "models"
            if "toy" not in parts and not (ck / f"m{TOY_M}_trained.json").is_file():
                ck = root / "hessian" / "toy"  # no toy step: one M = 10 Toy1 network, trained here
                steps.append(Step("hessian/toy", toy, toy.Config(branches=(TOY_M,), trials=1,
                                                                 steps=300 if quick else None, save_models=(TOY_M,),
                                                                 figures=False), section=False))
                ck = ck / "models"
            steps.append(Step("hessian", hessian, hessian_config(root, quick, ck)))
        elif part == "classifier":
            steps.append(Step("classifier", classifier, classifier_config(quick, shipped)))
        elif part == "decomposition":
            steps.append(Step("decomposition", gan, gan_config(quick)))
        elif part == "apps":
            steps.append(Step("apps", apps, apps_config(root, quick)))
    return steps
