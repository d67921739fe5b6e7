"""Each option defined once: a frozen config dataclass generates its command's flags (style habit 9).

A config field is the one definition of an option: its default is the option's default, and its
``metadata``, written by :func:`option`, holds the help, the flag when it is not ``--field-name``
(``--branches`` for ``num_branches``), the choices, the argparse group and whether the field is a
departure from the paper. From that:

* :func:`add_options` adds one flag per field to a parser (plus ``--config FILE``), every flag's
  default None, so a value the user gave is told apart from one they did not; ``--help`` shows the
  field's default. A bool field is a switch that sets the opposite of its default (``--tta`` for
  ``tta=False``, ``--no-clamp`` for ``clamp=True``).
* :func:`values` turns the parsed namespace back into the config's keyword arguments: the field
  defaults, over them a ``--config`` file's values (:func:`load_file`: TOML, JSON, or a run's
  ``config.json``), over those the flags given.
* A field that is not an int, float, str or bool (a tuple of M values, a list of pairs) names a ``parse``
  function: the flag takes text (``--branches 2-30``) and :func:`values` turns it into the field's value, a
  refusal (ValueError) becoming :class:`~branchspec.errors.ConfigError` of the field. A flag without ``--`` is
  positional (its metavar); ``const`` makes a switch that sets that value (``--save-model`` → ``save_models=None``).
* A field declared with :func:`api_only` is set by the API alone (the demo's sub-folders, figure labels): no flag.
* :func:`check_fields` validates choices and finiteness in a config's ``__post_init__``, raising
  :class:`~branchspec.errors.ConfigError` (field, reason); a command renames the field to its flag
  (:func:`flags`).
* :func:`departures` lists the departures from the paper a config has switched on.
* :func:`current_values` reads a recorded config in today's spelling (:data:`RENAMED_VALUES`): the
  one place where values of earlier versions are mapped, applied by the two readers of recorded
  configs, :func:`load_file` and :func:`branchspec.checkpoint.load_checkpoint`.

Example:
    >>> import argparse
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Cfg:
    ...     num_branches: int = option(16, "M, number of branches", flag="--branches")
    ...     clamp: bool = option(True, "one-hot cross-entropy", departure=True)
    >>> p = argparse.ArgumentParser()
    >>> add_options(p, Cfg)
    {'num_branches': '--branches', 'clamp': '--no-clamp'}
    >>> kw = values(p.parse_args(["--branches", "4", "--no-clamp"]), Cfg)
    >>> kw, departures(Cfg(**kw))
    ({'num_branches': 4, 'clamp': False}, ['clamp'])
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tomllib
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from branchspec.errors import ConfigError, UsageError

DEPARTURES = "departures from the paper (all off = the paper's objective)"
NOT_CONFIG = "run control (not part of the run's config)"  # the group of a command's own, hand-written flags
MAX_CONFIG_BYTES = 1 << 20  # a --config file is a few hundred bytes; refuse anything huge before parsing it
RENAMED_VALUES = {"engine": {"auto": "packed", "fused": "packed"}}
"""Values that configs written by earlier versions may record, by field, and what they read as now. ``engine``:
"auto" (timed at the first forward) and "fused" (vmap) are "packed", whose capability rule runs vmap where the
branches do not pack (:class:`branchspec.branched.Branched`). Given anew, an old value is refused like any other."""


def option(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None,  # noqa: A002
           choices: Iterable[Any] | None = None, group: str = "settings", metavar: str | None = None, departure: bool = False,
           default_help: str | None = None, cli_only: bool = False, required: bool = False,
           parse: Callable[[Any], Any] | None = None, many: str | None = None, const: Any = dataclasses.MISSING) -> Any:
    """A dataclass field that is also a command-line option.

    ``flag``: the flag when not ``--field-name`` (``--no-field-name`` for a bool that defaults to True); a name
    without ``--`` makes the option positional, shown as that name (``IMAGE_OR_FOLDER``);
    ``choices``: the allowed values (checked by argparse, the config file loader and :func:`check_fields`) — of
    the text, when the field has a ``parse`` function;
    ``departure``: not the paper's setting when changed from the default (group :data:`DEPARTURES`);
    ``default_help``: how ``--help`` states the default when the value alone does not say it (None defaults);
    ``cli_only``: given on the command line only — a ``--config`` file's value is ignored (the run folder);
    ``required``: the command line must give it, though the API has a default ("" = the run an experiment trained);
    ``parse``: text → the field's value, for a field that is not an int, float, str or bool (a range ``2-30``, a
    list ``0,3,5``); it raises ValueError with the reason, and gets the list of texts when ``many`` is set;
    ``many``: ``"append"`` (the flag repeats), ``"+"`` (one flag, one or more values) or ``"*"`` (a positional
    taking zero or more);
    ``const``: the flag takes no value and sets the field to ``const`` (a bool field's switch sets ``not default``).
    """
    meta = {"help": help, "flag": flag, "choices": tuple(choices) if choices is not None else None,
            "group": DEPARTURES if departure else group, "metavar": metavar, "departure": departure,
            "default_help": default_help, "cli_only": cli_only, "required": required, "parse": parse, "many": many,
            "const": const}
    if many not in (None, "append", "+", "*") or (many and parse is None):
        raise TypeError(f"option(many={many!r}): 'append', '+' or '*', with a parse function for the list of texts")
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def api_only(default: Any, help: str = "") -> Any:  # noqa: A002
    """A config field that is no command-line option: the API sets it (the demo, another experiment) and a
    command leaves the default — a sub-folder, figure labels, a progress bar the command decides."""
    return dataclasses.field(default=default, metadata={"api_only": True, "help": help})


@dataclasses.dataclass(frozen=True)
class Spec:
    """One config field as a command-line option."""

    field: str  # the config field
    flag: str  # "--branches", or a positional's name "IMAGE_OR_FOLDER"
    dest: str  # the namespace attribute: the flag's name, "branches" (a positional's: the field)
    type: type  # int, float, str or bool (None allowed when ``optional``); any type with a ``parse`` function
    optional: bool  # the field's type admits None
    default: Any  # the field's default, or dataclasses.MISSING (required)
    meta: dict[str, Any]

    @property
    def positional(self) -> bool:
        return not self.flag.startswith("-")

    @property
    def switch(self) -> bool:
        """The flag takes no value: a bool field, or a field with a ``const``."""
        return self.type is bool or self.meta.get("const", dataclasses.MISSING) is not dataclasses.MISSING

    def switched(self) -> Any:
        """The value the switch sets."""
        const = self.meta.get("const", dataclasses.MISSING)
        return (not self.default) if const is dataclasses.MISSING else const


def specs(cls: type) -> list[Spec]:
    """The options of config class ``cls``, in field order (not the :func:`api_only` fields)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("api_only"):
            continue
        if "group" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name}: declare it with options.option() or options.api_only()")
        typ, optional = _base_type(hints[f.name])
        if typ not in (int, float, str, bool) and f.metadata["parse"] is None and f.metadata["const"] is dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: a {typ} field needs option(parse=...)")
        flag = f.metadata.get("flag")
        if flag is None:
            flag = "--" + ("no-" if typ is bool and f.default is True else "") + f.name.replace("_", "-")
        dest = flag[2:].replace("-", "_") if flag.startswith("-") else f.name
        out.append(Spec(f.name, flag, dest, typ, optional, f.default, dict(f.metadata)))
    return out


def _base_type(hint: Any) -> tuple[type, bool]:
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else ()
    if args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], len(rest) < len(args)
    return hint, False


def flags(cls: type) -> dict[str, str]:
    """Config field → its flag (``{"num_branches": "--branches", ...}``), to name a field in an error."""
    return {s.field: s.flag for s in specs(cls)}


def fmt(value: Any) -> str:
    """A default as ``--help`` prints it: ``0.0001``, ``16``, ``packed``."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def default_text(s: Spec) -> str:
    """What ``--help`` says about the default: the field's default (or its ``default_help``)."""
    if s.meta.get("default_help"):
        return f" (default {s.meta['default_help']})"
    if s.switch or s.positional or s.meta.get("required") or s.default in (None, "", (), dataclasses.MISSING):
        return ""
    return f" (default {fmt(s.default)})"


def add_options(parser: argparse.ArgumentParser, cls: type, config_file: bool = True) -> dict[str, str]:
    """Add one flag per field of ``cls`` (each in its metadata's group, in field order but the "run" group and
    then the departures' last) and ``--config FILE``; returns :func:`flags`."""
    groups: dict[str, Any] = {}
    if config_file:
        parser.add_argument(
            "--config", metavar="FILE", default=None,
            help="TOML or JSON file of settings (keys: the field names of the run's config.json, e.g. "
                 "recipes/*.toml), or an earlier run's RUN/config.json: its values replace the defaults below, "
                 "flags given on the command line replace its values")
    titles = list(dict.fromkeys(s.meta["group"] for s in specs(cls)))
    for title in sorted(titles, key=lambda t: (t == DEPARTURES, t == "run")):  # then "run", the departures last
        groups[title] = parser.add_argument_group(title)
    for s in specs(cls):
        text = (s.meta["help"] + default_text(s)).replace("%", "%%")
        if s.positional:  # listed with the positional arguments, not in a group
            parser.add_argument(s.dest, nargs=s.meta["many"], metavar=s.flag, help=text)
            continue
        g = groups[s.meta["group"]]
        if s.switch:
            g.add_argument(s.flag, dest=s.dest, action="store_true", default=None, help=text)
            continue
        g.add_argument(s.flag, dest=s.dest, type=str if s.meta["parse"] else s.type, default=None, help=text,
                       choices=list(s.meta["choices"]) if s.meta["choices"] else None, metavar=s.meta["metavar"],
                       required=(s.meta["required"] and not config_file)  # else checked by values(): a file may set it
                       or (s.meta["cli_only"] and s.default is dataclasses.MISSING),
                       **({"action": "append"} if s.meta["many"] == "append" else {"nargs": s.meta["many"]}))
    return flags(cls)


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields whose flags were given on the command line, with their values (a switch: the value it sets;
    text of a field with a ``parse`` function: parsed, a refusal being :class:`ConfigError` of the field)."""
    out = {}
    for s in specs(cls):
        v = getattr(args, s.dest, None)
        if v is None or v == []:  # a positional with nargs "*" that got nothing
            continue
        out[s.field] = s.switched() if s.switch else parsed(s, v) if s.meta["parse"] else v
    return out


def parsed(s: Spec, text: Any) -> Any:
    """``s``'s parse function on ``text`` (a string, or the list of them for ``many``); its ValueError (a
    :class:`ConfigError` of another name too) becomes a :class:`ConfigError` of ``s.field``."""
    try:
        return s.meta["parse"](text)
    except ValueError as exc:
        raise ConfigError(s.field, exc.reason if isinstance(exc, ConfigError) else str(exc)) from None


def values(args: argparse.Namespace, cls: type, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """Keyword arguments of ``cls``: ``args.config``'s values (if any) under the flags given; a field
    without a default that neither sets is a one-line :class:`UsageError` naming its flag."""
    path = getattr(args, "config", None)
    out = {**(load_file(path, cls, ignore) if path else {}), **given(args, cls)}
    for s in specs(cls):
        if (s.default is dataclasses.MISSING or s.meta["required"]) and s.field not in out:
            raise UsageError(f"{s.flag} is required (on the command line or in a --config file)")
    return out


def load_file(path: str | Path, cls: type, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """The settings in a ``--config`` file: ``{field: value}`` for fields of ``cls``, type-checked.

    ``*.toml`` is TOML, anything else JSON. A train-gan run's ``config.json`` (``{"train": {...},
    "generator": ...}``) gives its ``"train"`` object. Keys in ``ignore`` (what a run's config.json
    records besides the fields: ``resolved_lr``, ``model``, ...) and fields that are ``cli_only`` are
    skipped; any other key that is not a field is a one-line error naming the file and the key.
    """
    p = Path(path)
    where = f"--config {p}"
    try:
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise UsageError(f"{where}: larger than {MAX_CONFIG_BYTES} bytes; not a config file")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{where}: cannot read it ({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    try:
        doc = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:150]
        raise UsageError(f"{where}: not valid {'TOML' if p.suffix.lower() == '.toml' else 'JSON'} ({first})") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{where}: must hold a table / object of settings, got {type(doc).__name__}")
    by_field = {s.field: s for s in specs(cls)}
    if isinstance(doc.get("train"), dict) and "train" not in by_field:  # a train-gan run's config.json
        doc = doc["train"]
    out = {}
    for key, value in current_values(doc).items():
        s = by_field.get(key)
        if s is None:
            if key in ignore:
                continue
            alias = next((t.field for t in by_field.values() if t.dest == key), None)
            hint = f" (the key of {'--' + key.replace('_', '-')} is {alias})" if alias else ""
            raise UsageError(f"{where}: unknown key {key!r}{hint}; keys are {cls.__name__} fields")
        if s.meta["cli_only"]:
            continue
        out[key] = _file_value(s, value, where)
    return out


def _file_value(s: Spec, value: Any, where: str) -> Any:
    if value is None and (s.optional or s.default is None):
        return None
    if s.meta["parse"] is not None:  # text as on the command line, or the value itself (a list for a tuple)
        if isinstance(value, str) or s.meta["many"]:
            if s.meta["many"]:  # the repeated flag's texts: a list in the file (of numbers too), or one text
                value = [str(v) for v in value] if isinstance(value, list) else [str(value)]
            try:
                return parsed(s, value)
            except ConfigError as exc:
                raise UsageError(f"{where}: {exc}") from None
        return tuple(value) if isinstance(value, list) else value
    ok = {bool: isinstance(value, bool), str: isinstance(value, str),
          int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool)}.get(s.type, True)
    if not ok:
        want = {bool: "true or false", str: "a string", int: "an integer", float: "a number"}[s.type]
        raise UsageError(f"{where}: {s.field} must be {want}{' or null' if s.optional else ''}, got {value!r:.60}")
    if s.meta["choices"] and value not in s.meta["choices"]:
        raise UsageError(f"{where}: {s.field} must be one of {list(s.meta['choices'])}, got {value!r:.60}")
    return float(value) if s.type is float else value


def current_values(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` of a recorded config (a ``--config`` file, a checkpoint's ``train_config`` or model config) with
    every value of :data:`RENAMED_VALUES` in today's spelling.

    Example:
        >>> current_values({"engine": "auto", "seed": 0})
        {'engine': 'packed', 'seed': 0}
    """
    return {k: RENAMED_VALUES[k].get(v, v) if k in RENAMED_VALUES and isinstance(v, str) else v
            for k, v in fields.items()}


def check_fields(cfg: Any) -> None:
    """The checks every option shares, for a config's ``__post_init__``: a value among its field's
    choices, a float finite. Raises :class:`ConfigError` (field, reason)."""
    for s in specs(type(cfg)):
        v = getattr(cfg, s.field)
        if s.meta["choices"] and s.meta["parse"] is None and v not in s.meta["choices"]:
            raise ConfigError(s.field, f"must be one of {s.meta['choices']}, got {v!r}")
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(s.field, f"must be a finite number, got {v}")


def departures(cfg: Any) -> list[str]:
    """The fields of ``cfg`` marked ``departure`` whose value is not their default (the paper's setting)."""
    return [f.name for f in dataclasses.fields(cfg) if f.metadata.get("departure") and getattr(cfg, f.name) != f.default]


__all__ = ["DEPARTURES", "NOT_CONFIG", "RENAMED_VALUES", "option", "api_only", "Spec", "specs", "flags", "add_options", "given", "parsed", "values", "load_file",
           "check_fields", "departures", "default_text", "fmt"]


def markdown_table(cls: type) -> str:
    """The options of config class ``cls`` as a Markdown table (flag · default · group · help), in field order:
    the reference pages' option lists are generated from the configs, not written again."""
    rows = ["| flag | default | group | what it sets |", "|---|---|---|---|"]
    for s in specs(cls):
        if s.default is dataclasses.MISSING:
            default = "required"
        elif s.meta.get("default_help"):
            default = s.meta["default_help"]
        elif s.switch:
            default = "off"  # a switch: given, it sets the opposite of the field's default
        elif s.meta.get("required"):
            default = "required"
        else:
            default = "—" if s.default in (None, "", ()) else fmt(s.default)
        group = "departure" if s.meta.get("departure") else "positional" if s.positional else str(s.meta["group"])
        text = str(s.meta.get("help", "")).replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{s.flag}` | {default} | {group} | {text} |")
    return "\n".join(rows) + "\n"
