"""The offline HTML report: one self-contained page, every figure inlined.

Each part of the package contributes a :class:`Section` (figures, key
numbers, and a line saying how each was produced). Sections are saved as
``DIR/<key>/section.json`` next to the results they describe, so
``branchspec report --out DIR`` rebuilds the page from saved files alone.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from branchspec.io import atomic_write_text


@dataclass(frozen=True)
class Figure:
    """One image of the report: ``path`` relative to the report folder."""

    path: str
    caption: str  # what it shows, citing the paper's figure
    command: str = ""  # how it was produced


@dataclass(frozen=True)
class Section:
    """A part of the report (toy, Hessian, classifier, decomposition, …)."""

    key: str  # folder name under the report folder, e.g. "toy"
    title: str
    intro: str = ""
    numbers: dict = field(default_factory=dict)  # name -> value (number or short text)
    figures: list = field(default_factory=list)  # list[Figure]
    notes: list = field(default_factory=list)  # how-produced lines, caveats

    def save(self, out_dir: Path) -> Path:
        """Write ``out_dir/<key>/section.json``."""
        d = Path(out_dir) / self.key
        d.mkdir(parents=True, exist_ok=True)
        doc = asdict(self)
        return atomic_write_text(d / "section.json", json.dumps(doc, indent=2, default=str))

    @staticmethod
    def load(path: Path) -> "Section":
        """Read a ``section.json``; a malformed one raises ``ValueError`` with a one-line reason."""
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"unreadable ({type(exc).__name__})") from None
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        strings = {k: doc.get(k, "") for k in ("key", "title", "intro")}
        if not all(isinstance(v, str) for v in strings.values()) or not strings["key"]:
            raise ValueError("key, title and intro must be strings")
        numbers, figures, notes = doc.get("numbers", {}), doc.get("figures", []), doc.get("notes", [])
        if not isinstance(numbers, dict) or not isinstance(figures, list) or not isinstance(notes, list):
            raise ValueError("numbers must be an object, figures and notes lists")
        figs = []
        for f in figures:
            if not isinstance(f, dict) or not all(isinstance(f.get(k, ""), str) for k in ("path", "caption", "command")):
                raise ValueError("every figure needs string path, caption and command")
            figs.append(Figure(f.get("path", ""), f.get("caption", ""), f.get("command", "")))
        return Section(strings["key"], strings["title"], strings["intro"], numbers, figs, [str(n) for n in notes])


ORDER = ["toy", "hessian", "classifier", "decomposition", "apps"]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _inside(out_dir: Path, rel: str) -> Path | None:
    """``out_dir / rel`` if it resolves (links followed) to a file inside ``out_dir``, else None."""
    try:
        p = (out_dir / rel).resolve()
        return p if p.is_relative_to(out_dir.resolve()) and p.is_file() else None
    except (OSError, ValueError):
        return None


def _img(out_dir: Path, fig: Figure) -> str:
    p = _inside(out_dir, fig.path)  # never embed a file outside the report's own folder
    if p is None:
        return f'<p class="missing">missing figure: {html.escape(fig.path)}</p>'
    mime = "image/gif" if p.suffix.lower() == ".gif" else "image/png"
    data = base64.b64encode(p.read_bytes()).decode()
    return f'<img alt="{html.escape(fig.caption)}" src="data:{mime};base64,{data}">'


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
figure{margin:1.2em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.92em;color:#333} code{background:#f4f4f4;padding:0 .2em}
.cmd{font-size:.85em;color:#555} .missing{color:#b00} nav a{margin-right:1em}
"""


def _id(key: str) -> str:
    """An HTML id/fragment from a section key: only [A-Za-z0-9_-] survive, then escaped."""
    return html.escape("".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in str(key)), quote=True)


def render(out_dir: Path, sections: list[Section], title: str = "branchspec report",
           warnings: list[str] | None = None) -> str:
    out_dir = Path(out_dir)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             "<p>Brokman &amp; Gilboa, <i>Analysis of Branch Specialization and its Application in Image "
             f"Decomposition</i>. Generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by branchspec.</p>",
             "<nav>" + "".join(f"<a href='#{_id(s.key)}'>{html.escape(s.title)}</a>" for s in sections) + "</nav>"]
    for s in sections:
        parts.append(f"<h2 id='{_id(s.key)}'>{html.escape(s.title)}</h2>")
        if s.intro:
            parts.append(f"<p>{html.escape(s.intro)}</p>")
        if s.numbers:
            rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in s.numbers.items())
            parts.append(f"<table>{rows}</table>")
        for f in s.figures:
            cmd = f"<div class='cmd'>produced by <code>{html.escape(f.command)}</code></div>" if f.command else ""
            parts.append(f"<figure>{_img(out_dir, f)}<figcaption>{html.escape(f.caption)}</figcaption>{cmd}</figure>")
        for n in s.notes:
            parts.append(f"<p class='cmd'>{html.escape(n)}</p>")
    for w in warnings or []:
        parts.append(f"<p class='missing'>warning: {html.escape(w)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def collect_sections(out_dir: Path, warnings: list[str] | None = None) -> list[Section]:
    """All ``*/section.json`` under ``out_dir``, in the report's order; a malformed one is left out
    and described in ``warnings`` (one line each) instead of ending the report."""
    found = {}
    for p in sorted(Path(out_dir).glob("*/section.json")):
        try:
            found[p.parent.name] = Section.load(p)
        except ValueError as exc:
            if warnings is not None:
                warnings.append(f"{p.parent.name}/section.json skipped: {exc}")
    keys = [k for k in ORDER if k in found] + sorted(k for k in found if k not in ORDER)
    return [found[k] for k in keys]


def write_report(out_dir: Path, sections: list[Section] | None = None, title: str = "branchspec report") -> Path:
    """Write ``out_dir/report.html`` from ``sections`` (default: the saved ones)."""
    out_dir = Path(out_dir)
    warnings: list[str] = []
    if sections is None:
        sections = collect_sections(out_dir, warnings)
    return atomic_write_text(out_dir / "report.html", render(out_dir, sections, title, warnings))
