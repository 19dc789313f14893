"""The config reference in ``docs/configs.md``, rendered from the schema so the docs cannot drift from the code.

``tapo config docs --write docs/configs.md`` rewrites only the part between the two marker comments; the prose
above them is written by hand. A test fails when the file and the schema disagree.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Any, Literal

import yaml
from pydantic.fields import FieldInfo

from tapo.config.migrate import DEPRECATED_KEYS
from tapo.config.schema import Section, TapoConfig, section_model, variants

BEGIN = "<!-- BEGIN GENERATED: tapo config docs -->"
END = "<!-- END GENERATED -->"


@dataclass(frozen=True)
class SectionDoc:
    """One table of the reference: a section, or one backend of a tagged field (``kind`` set)."""

    path: str
    model: type[Section]
    kind: str | None = None


def iter_sections(model: type[Section] = TapoConfig, path: str = "") -> Iterator[SectionDoc]:
    """Every section under ``model`` (itself excluded), depth first, each backend of a tagged field included."""
    for name, field in model.model_fields.items():
        dotted = f"{path}.{name}" if path else name
        choices = variants(field)
        for kind, member in choices.items():
            yield SectionDoc(dotted, member, kind)
        sub = section_model(field)
        if sub:
            yield SectionDoc(dotted, sub)
            yield from iter_sections(sub, dotted)
        if item := _item_section(field):  # a list of sections (tools.mcp): one table for its items
            yield SectionDoc(f"{dotted}[]", item)
            yield from iter_sections(item, f"{dotted}[]")


def _item_section(field: FieldInfo) -> type[Section] | None:
    """The section a list field holds items of, or None."""
    args = typing.get_args(field.annotation) if typing.get_origin(field.annotation) is list else ()
    return args[0] if args and isinstance(args[0], type) and issubclass(args[0], Section) else None


def _type(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{arg}`" for arg in args)
    if origin in (typing.Union, UnionType):
        return " \\| ".join(_type(arg) for arg in args)
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is dict:
        return f"map {_type(args[0])} → {_type(args[1])}"
    if annotation is NoneType:
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, Section):
        return f"`{value.kind}`" if "kind" in type(value).model_fields else ""  # type: ignore[attr-defined]
    text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n")
    return f"`{text.strip()}`" if text.strip() else '`""`'


def _row(name: str, field: FieldInfo) -> str:
    kinds = variants(field)
    kind = " \\| ".join(f"`{k}`" for k in kinds) if kinds else _type(field.annotation)
    meaning = (field.description or "").replace("|", "\\|")
    return f"| `{name}` | {kind} | {_default(field)} | {meaning} |"


def _table(doc: SectionDoc) -> list[str]:
    title = f"`{doc.path}` = `{doc.kind}`" if doc.kind else f"`{doc.path}`"
    docstring = " ".join((doc.model.__doc__ or "").split())
    if doc.kind:
        docstring += f" Written `{doc.path}: {{kind: {doc.kind}, ...}}`, or `{doc.path}: {doc.kind}` for the defaults."
    rows = [_row(name, field) for name, field in doc.model.model_fields.items() if name != "kind"]
    header = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"] if rows else []
    return [f"### {title}", "", docstring, "", *header, *rows, ""]


def render_config_docs() -> str:
    """The generated part of docs/configs.md, markers included."""
    lines = [
        BEGIN,
        "",
        "<!-- `tapo config docs --write docs/configs.md` regenerates this part from the schema. -->",
        "",
    ]
    lines += ["## Reference", ""]
    for doc in iter_sections():
        lines += _table(doc)
    lines += ["## Deprecated keys", ""]
    lines += ["Accepted, with a one-line warning, until the next release.", ""]
    lines += ["| old | new |", "| --- | --- |"]
    lines += [
        f"| `{old}` | {f'`{new}`' if new else 'removed: it never had an effect'} |"
        for old, new in DEPRECATED_KEYS.items()
    ]
    lines += ["", END]
    return "\n".join(lines) + "\n"


def replace_generated(text: str, generated: str) -> str:
    """``text`` with its marked part replaced by ``generated``; ValueError when the markers are missing."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no generated part: expected the lines {BEGIN!r} ... {END!r}")
    return text[:start] + generated + text[end + len(END) :].removeprefix("\n")
