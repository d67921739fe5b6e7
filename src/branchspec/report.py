"""The offline HTML report: one self-contained page, every figure inlined.

Each part of the package contributes a :class:`Section` (figures, key
numbers, and a line saying how each was produced). Sections are saved as
``DIR/<key>/section.json`` next to the results they describe, so
``branchspec report --out DIR`` rebuilds the page from saved files alone.

The report folder may hold anything, so every file is read through
:func:`branchspec.io.read_capped`: only regular files inside the folder (a
link out of it is not followed), each under its own size limit, and PNG, GIF
or JPEG images only — never the page itself. The whole page is held to
:data:`MAX_PAGE_BYTES`; what does not fit is left out, counted, and said so
on the page. Every file that cannot be used is a one-line warning, never an
error that ends the report.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from branchspec.io import TooLarge, atomic_write_text, read_capped, safe_stem
from branchspec.numtext import number

REPORT_FILE = "report.html"
MAX_SECTION_BYTES = 1 << 20  # one section.json
MAX_FIGURE_BYTES = 16 << 20  # one embedded image
MAX_PAGE_BYTES = 64 << 20  # the whole page; figures and sections past it are left out (counted, noted on the page)
_IMAGE_TYPES = {b"\x89PNG": "image/png", b"GIF87a": "image/gif", b"GIF89a": "image/gif", b"\xff\xd8\xff": "image/jpeg"}


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
    def load(path: Path, inside: Path | None = None, limit: int = MAX_SECTION_BYTES) -> "Section":
        """Read a ``section.json`` (a regular file of at most ``limit`` bytes, inside the folder ``inside``
        when given); a malformed or unreadable one raises ``ValueError`` with a one-line reason."""
        raw = read_capped(path, limit, inside)
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, nesting too deep, a 5,000-digit int
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


class _Page:
    """The parts of the page, held to ``budget`` characters; counts what was left out and why."""

    def __init__(self, out_dir: Path, budget: int):
        self.out_dir, self.left = out_dir, budget
        self.skipped: list[str] = []  # one line per figure not embedded (missing, outside, not an image …)
        self.over = {"figure": 0, "section": 0}  # left out for the page budget

    def add(self, text: str) -> bool:
        """Whether ``text`` fits the page (then it is counted against the budget)."""
        if len(text) > self.left:
            return False
        self.left -= len(text)
        return True

    def image(self, fig: Figure) -> str | None:
        """The ``<img>`` of ``fig`` (its file inside the folder, not the page itself, an image, within the
        limits); '' when it does not fit the page any more; None when it cannot be used (noted in skipped)."""
        p, name = self.out_dir / fig.path, fig.path[:200]
        try:
            own = self.out_dir / REPORT_FILE
            if os.path.lexists(own) and os.path.samefile(p, own):
                raise ValueError("it is the report page itself")
            room = (self.left - 300 - 2 * len(fig.caption)) // 4 * 3  # base64: 4 characters per 3 bytes
            data = read_capped(p, max(0, min(MAX_FIGURE_BYTES, room)), self.out_dir)
            mime = next((t for magic, t in _IMAGE_TYPES.items() if data.startswith(magic)), None)
            if mime is None:
                raise ValueError("not a PNG, GIF or JPEG image")
        except TooLarge as exc:
            if exc.size <= MAX_FIGURE_BYTES:
                self.over["figure"] += 1
                return ""
            self.skipped.append(f"{name}: larger than {MAX_FIGURE_BYTES} bytes")
            return None
        except (OSError, ValueError) as exc:  # missing, a loop, outside the folder, unreadable, not a file
            self.skipped.append(f"{name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            return None
        return f'<img alt="{html.escape(fig.caption)}" src="data:{mime};base64,{base64.b64encode(data).decode()}">'


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
figure{margin:1.2em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.92em;color:#333} code{background:#f4f4f4;padding:0 .2em}
.cmd{font-size:.85em;color:#555} .missing{color:#b00} nav a{margin-right:1em} td,th{overflow-wrap:anywhere}
"""


def _id(key: str) -> str:
    """An HTML id/fragment from a section key: only [A-Za-z0-9_-] survive, then escaped."""
    return html.escape(safe_stem(str(key), limit=None), quote=True)


def _section_html(s: Section) -> list[str]:
    parts = [f"<h2 id='{_id(s.key)}'>{html.escape(s.title)}</h2>"]
    if s.intro:
        parts.append(f"<p>{html.escape(s.intro)}</p>")
    if s.numbers:
        rows = "".join(f"<tr><th>{html.escape(number(k))}</th><td>{html.escape(number(v))}</td></tr>"
                       for k, v in s.numbers.items())
        parts.append(f"<table>{rows}</table>")
    for n in s.notes:
        parts.append(f"<p class='cmd'>{html.escape(n)}</p>")
    return parts


def render(out_dir: Path, sections: list[Section], title: str = "branchspec report",
           warnings: list[str] | None = None, budget: int | None = None) -> str:
    """The page of ``sections``, at most ``budget`` characters (default :data:`MAX_PAGE_BYTES`; figures, then
    whole sections past it are left out, counted on the page). Figures not embedded and what the budget left
    out are appended to ``warnings``."""
    out_dir = Path(out_dir)
    budget = MAX_PAGE_BYTES if budget is None else budget
    warnings = [] if warnings is None else warnings
    page = _Page(out_dir, budget - 4096)  # room for the head, the counts and the warnings' first lines
    body: list[tuple[Section, list[str]]] = []
    for s in sections:
        parts = _section_html(s)
        if not page.add("\n".join(parts)):
            page.over["section"] += 1
            continue
        for f in s.figures:
            cmd = f"<div class='cmd'>produced by <code>{html.escape(f.command)}</code></div>" if f.command else ""
            img = page.image(f)
            if img == "":
                continue  # over the page budget: counted
            img = img or f'<p class="missing">figure left out: {html.escape(page.skipped[-1])}</p>'
            text = f"<figure>{img}<figcaption>{html.escape(f.caption)}</figcaption>{cmd}</figure>"
            if page.add(text):
                parts.insert(len(parts) - len(s.notes), text)
            else:
                page.over["figure"] += 1
        body.append((s, parts))
    if page.skipped:
        warnings.append(f"{len(page.skipped)} figure(s) not embedded (first: {page.skipped[0]})")
    if any(page.over.values()):
        warnings.append(f"{page.over['figure']} figure(s) and {page.over['section']} section(s) left out: the page "
                        f"is limited to {budget / 2**20:g} MB; their files are still in {out_dir}")
    head = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            "<p>Brokman &amp; Gilboa, <i>Analysis of Branch Specialization and its Application in Image "
            f"Decomposition</i>. Generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by branchspec.</p>",
            "<nav>" + "".join(f"<a href='#{_id(s.key)}'>{html.escape(s.title)}</a>" for s, _ in body) + "</nav>"]
    tail = [f"<p class='missing'>warning: {html.escape(w[:2000])}</p>" for w in warnings[:100]]
    if len(warnings) > 100:
        tail.append(f"<p class='missing'>warning: {len(warnings) - 100} more warning(s) not shown</p>")
    return "\n".join(head + [p for _, parts in body for p in parts] + tail + ["</body></html>"])


def collect_sections(out_dir: Path, warnings: list[str] | None = None, budget: int | None = None) -> list[Section]:
    """Every ``<sub>/section.json`` of ``out_dir``, in the report's order.

    Only regular files inside ``out_dir`` are read (a sub-folder or ``section.json`` linked from elsewhere is
    skipped), each at most :data:`MAX_SECTION_BYTES`, together at most ``budget`` bytes (default
    :data:`MAX_PAGE_BYTES`); a section that is
    malformed, unreadable or past the budget is left out and described in ``warnings`` (one line each, past
    the budget one line with the count) instead of ending the report. An unreadable ``out_dir`` raises
    ``OSError``.
    """
    out_dir = Path(out_dir)
    warnings = [] if warnings is None else warnings
    budget = MAX_PAGE_BYTES if budget is None else budget
    with os.scandir(out_dir) as it:
        names = sorted(e.name for e in it)
    found, over = {}, 0
    for name in names:
        p = out_dir / name / "section.json"
        try:
            os.lstat(p)
        except (FileNotFoundError, NotADirectoryError):
            continue  # a file, or a folder without a section
        except OSError as exc:  # an unreadable sub-folder
            warnings.append(f"{name}/section.json skipped: {str(exc.strerror or exc).lower()}")
            continue
        try:
            found[name] = Section.load(p, out_dir, min(MAX_SECTION_BYTES, budget))
            budget -= p.stat().st_size
        except TooLarge as exc:
            if exc.size <= MAX_SECTION_BYTES:
                over += 1
            else:
                warnings.append(f"{name}/section.json skipped: {exc}")
        except (OSError, ValueError) as exc:
            warnings.append(f"{name}/section.json skipped: {exc}")
    if over:
        warnings.append(f"{over} section.json file(s) left out: together they pass the page limit of "
                        f"{MAX_PAGE_BYTES / 2**20:g} MB")
    keys = [k for k in ORDER if k in found] + sorted(k for k in found if k not in ORDER)
    return [found[k] for k in keys]


def write_report(out_dir: Path, sections: list[Section] | None = None, title: str = "branchspec report",
                 warnings: list[str] | None = None) -> Path:
    """Write ``out_dir/report.html`` from ``sections`` (default: the saved ones); what could not be used is
    appended to ``warnings`` (and shown at the end of the page)."""
    out_dir = Path(out_dir)
    warnings = [] if warnings is None else warnings
    if sections is None:
        sections = collect_sections(out_dir, warnings)
    return atomic_write_text(out_dir / REPORT_FILE, render(out_dir, sections, title, warnings))
