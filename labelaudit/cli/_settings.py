"""Advanced settings on the command line: ``--config FILE.toml`` or ``--config 'key = value'``, the
``[tool.labelaudit.<command>]`` table of pyproject.toml, and every setting's own ``--<setting> VALUE``
flag, which works but is not listed in ``--help`` (so scripts written against the long option list
keep running). The library reads the files (labelaudit.config); this module only maps flags."""
from __future__ import annotations

import dataclasses

import typer
from typer.core import TyperCommand

from ..config import field_types, settings as read_settings
from ..errors import UsageError

_META = "labelaudit.flags"


def _convert(flag: str, text: str, annotation: str):
    """A flag's text as the field's type (config.field_types of its annotation)."""
    types = field_types(annotation)
    if "None" in types and text.lower() == "none":
        return None
    if "str" in types:
        return text
    try:
        return float(text) if "float" in types else int(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected a {'number' if 'float' in types else 'whole number'}",
                                 param_hint=flag) from None


def settings_command(settings_cls, aliases: dict[str, str] | None = None):
    """A Typer command class whose parser takes ``--<field> VALUE``, ``--<field>=VALUE`` and, for a
    switch, ``--<field>`` / ``--no-<field>`` for every field of ``settings_cls`` that is not one of
    the command's listed options; the values wait in the context for :func:`merged`."""
    fields = {f.name: str(f.type) for f in dataclasses.fields(settings_cls)}
    aliases = aliases or {}

    class SettingsCommand(TyperCommand):
        def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
            listed = {opt for p in self.params for opt in (*p.opts, *p.secondary_opts)}
            rest, flags, i = [], {}, 0
            while i < len(args):
                token = args[i]
                flag, eq, value = token.partition("=")
                name = flag[2:].replace("-", "_") if flag.startswith("--") else None
                if name is None or flag in listed or token == "--":
                    rest.append(token)
                    if token == "--":
                        rest += args[i + 1:]
                        break
                    i += 1
                    continue
                name = aliases.get(name, name)
                negated = name.startswith("no_") and name[3:] in fields and "bool" in fields[name[3:]]
                field = name[3:] if negated else name
                if field not in fields:
                    rest.append(token)  # click names the unknown option
                    i += 1
                    continue
                if "bool" in fields[field]:
                    if eq:
                        raise typer.BadParameter(f"takes no value; write {flag} or --no-{flag[2:]}", param_hint=flag)
                    flags[field] = not negated
                    i += 1
                    continue
                if not eq:
                    if i + 1 >= len(args):
                        raise typer.BadParameter("needs a value", param_hint=flag)
                    value, i = args[i + 1], i + 1
                flags[field] = _convert(flag, value, fields[field])
                i += 1
            ctx.meta[_META] = flags
            return super().parse_args(ctx, rest)

    return SettingsCommand


def merged(ctx: typer.Context, settings_cls, sources: list[str], explicit: dict, *, section: str):
    """``settings_cls`` from, in rising order: its defaults, the discovered settings file, each
    ``--config``, the unlisted ``--<setting>`` flags, and the listed options the user gave (``explicit``,
    None = not given). UsageError for an unknown key or a value of the wrong type."""
    values = read_settings(settings_cls, sources, section=section)
    values.update(ctx.meta.get(_META, {}))
    values.update({k: v for k, v in explicit.items() if v is not None})
    try:
        return settings_cls(**values)
    except TypeError as exc:  # pragma: no cover - names are checked above
        raise UsageError(str(exc)) from None
