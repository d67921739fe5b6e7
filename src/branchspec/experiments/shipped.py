"""Shipped models in the report: a folder with ``shipped.json`` whose saved figures join a section.

A shipped model (the §6 CIFAR-10 classifier, the §7 photograph generators)
keeps, beside its weights, the figures and numbers of its analysis and a
``shipped.json``::

    {"title": "...", "numbers": {"name": value}, "notes": ["..."],
     "figures": [{"file": "grid.png", "caption": "...", "command": "branchspec ...",
                  "section": "decomposition"}]}

:func:`copy_shipped` copies the figures of one section into the report
folder (the report embeds only its own files). Only regular files inside
the shipped folder are taken: a name that leaves it (absolute, ``..``, a
symlink out) or a malformed ``shipped.json`` is a one-line
:class:`~branchspec.errors.ConfigError`; nothing is copied before every
entry has been checked.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from branchspec.errors import ConfigError
from branchspec.experiments import common
from branchspec.io import atomic_write_bytes, read_capped, regular_file
from branchspec.report import Figure, Section

SHIPPED_FILE = "shipped.json"
MAX_SHIPPED_BYTES = 1 << 20  # shipped.json larger than this is refused
MAX_FIGURE_BYTES = 16 << 20  # one figure larger than this is refused


def read_shipped(src: str | Path, field: str = "shipped") -> dict:
    """The checked ``shipped.json`` of folder ``src`` (errors name ``field``)."""
    path = Path(src) / SHIPPED_FILE
    try:
        raw = read_capped(path, MAX_SHIPPED_BYTES, src)
    except ValueError as exc:  # missing, a link out of the folder, not a regular file, too large
        raise ConfigError(field, f"{path} cannot be read: {exc}") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ConfigError(field, f"{path} is unreadable ({type(exc).__name__})") from None
    figs = doc.get("figures", []) if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or not isinstance(figs, list) or not all(
            isinstance(f, dict) and isinstance(f.get("file"), str) for f in figs):
        raise ConfigError(field, f"{path} must be an object with 'figures': [{{'file': ...}}, ...]")
    if not isinstance(doc.get("numbers", {}), dict) or not isinstance(doc.get("notes", []), list):
        raise ConfigError(field, f"{path}: 'numbers' must be an object and 'notes' a list")
    return doc


def inside(folder: Path, name: str, field: str = "shipped", limit: int = MAX_FIGURE_BYTES) -> Path:
    """``folder / name`` resolved if it is a regular file of at most ``limit`` bytes inside ``folder`` (symlinks
    resolved), else a ConfigError."""
    if Path(name).is_absolute():
        raise ConfigError(field, f"{folder / SHIPPED_FILE} names {name!r}, outside {folder}")
    try:
        return regular_file(folder / name, limit, folder)
    except ValueError as exc:
        raise ConfigError(field, f"{folder / name} is listed in {SHIPPED_FILE} but cannot be used: {exc}") from None


def read_inside(folder: Path, name: str, field: str = "shipped", limit: int = MAX_FIGURE_BYTES) -> bytes:
    """The bytes of :func:`inside` ``(folder, name)``, read within the same limits."""
    try:
        return read_capped(inside(folder, name, field, limit), limit, folder)
    except ValueError as exc:
        raise ConfigError(field, f"{folder / name} cannot be read: {exc}") from None


def copy_shipped(src: str | Path, dest: str | Path, section: str | None = None, field: str = "shipped") -> dict:
    """Copy the figures of ``section`` (None: all; a figure without "section" belongs to every section)
    of the shipped folder ``src`` into ``dest``; returns the document with the copied file names."""
    src, dest = Path(src), Path(dest)
    doc = read_shipped(src, field)
    chosen = [f for f in doc.get("figures", []) if section is None or f.get("section", section) == section]
    files = [inside(src, f["file"], field) for f in chosen]  # every entry checked before any copy
    figures, used = [], set()
    for fig, path in zip(chosen, files):
        name = path.name if path.name not in used else f"{len(used)}-{path.name}"
        used.add(name)
        atomic_write_bytes(dest / name, read_inside(src, fig["file"], field))
        figures.append({**fig, "file": name})
    return {**doc, "figures": figures, "source": str(src)}


def copy_all(folders, out: Path, section: str) -> list[dict]:
    """:func:`copy_shipped` of every folder in ``folders`` into ``out/shipped/<folder name>/``."""
    return [copy_shipped(f, Path(out) / "shipped" / Path(f).name, section) for f in folders]


def with_shipped(section: Section, docs: list[dict], out: Path) -> Section:
    """``section`` with the figures, numbers and notes of the copied shipped documents ``docs`` appended
    (the section lives under ``out``)."""
    figures, numbers, notes = [], {}, []
    for doc in docs:
        title, folder = doc.get("title", Path(doc["source"]).name), Path(out) / "shipped" / Path(doc["source"]).name
        for fig in doc["figures"]:
            figures.append(Figure(common.relative(out, folder / fig["file"]), f"{title}: {fig.get('caption', '')}",
                                  fig.get("command", "")))
        numbers.update({f"{title}: {k}": v for k, v in doc.get("numbers", {}).items()})
        notes += [f"{title}: {n}" for n in doc.get("notes", []) if isinstance(n, str)]
    return replace(section, figures=section.figures + figures, numbers={**section.numbers, **numbers},
                   notes=section.notes + notes)
