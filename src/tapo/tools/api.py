"""A tool is a user's Python file: a typed, documented function (sync or async) or a ``Tool`` class.

The config names it by import path (``tools.extra: [mypkg.tools:to_celsius]``) or by the name of a ``tapo.tools``
entry point. Everything the protocol needs derives from the object itself: the tag is its name, the prompt rule,
the one-sentence rule and the corrective hint come from its docstring and argument schema, and the schema from its
type hints (through pydantic). A function with one ``str`` parameter reads the raw text between its tags
(``<lookup> Paris </lookup>``); any other signature reads a JSON object of its arguments
(``<to_celsius> {"degrees": 451, "scale": "F"} </to_celsius>``), checked against the schema before the call, so
a malformed call is text the model reads, never a crash. TAPO's ``search`` and ``code`` are :class:`ToolDef` s too
(``tapo.tools.catalog``). A definition that cannot work is a :class:`ToolDefinitionError` of one line naming it,
raised when the run resolves its tools, before any work.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import importlib.metadata
import inspect
import json
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic
import pydantic_core

from tapo.config.schema import ToolsConfig
from tapo.protocol import TOOL_CALL, ToolSpec, text_argument
from tapo.tools.base import Tool, ToolResult

ENTRY_POINT_GROUP = "tapo.tools"
"""The entry-point group a package registers its tools in: ``[project.entry-points."tapo.tools"]``."""


class ToolDefinitionError(ValueError):
    """A tool that cannot be offered to the model (import error, bad signature, bad schema, name clash)."""


@dataclass(frozen=True)
class ToolDef:
    """One tool a run can offer: how the model calls it (``spec``) and how to start it (``build``).

    ``origin`` says where it came from, for messages (``tapo``, an import path, an MCP server). ``schema`` is the
    JSON schema of its arguments, None when it reads the raw text between its tags.
    """

    spec: ToolSpec
    build: Callable[[ToolsConfig], Tool]
    origin: str
    schema: Mapping[str, Any] | None = None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _description(doc: str | None, what: str) -> str:
    """The first paragraph of a docstring, on one line; a tool without one is refused (the model reads it)."""
    if not doc or not doc.strip():
        raise ToolDefinitionError(f"{what} has no docstring: its first paragraph is what the prompt tells the model")
    return _one_line(inspect.cleandoc(doc).split("\n\n")[0])


def _first_sentence(text: str) -> str:
    head, dot, _ = text.partition(". ")
    return head + "." if dot or not head.endswith(".") else head


def _json_type(schema: Mapping[str, Any]) -> str:
    """A short type for a prompt: ``number``, ``"km"|"mi"``, ``list``, ``string|null``."""
    if "enum" in schema:
        return "|".join(json.dumps(value) for value in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return "|".join(_json_type(option) for option in schema[key])
    kind = schema.get("type", "any")
    return {"array": "list", "integer": "integer"}.get(kind, kind) if isinstance(kind, str) else "|".join(kind)


def check_schema(schema: Any, what: str) -> Mapping[str, Any]:
    """An argument schema a model can write a call for: a JSON object schema whose properties are named by
    identifiers; anything else is refused."""
    if not isinstance(schema, Mapping) or schema.get("type", "object") != "object":
        raise ToolDefinitionError(f"{what}: its argument schema is not a JSON object schema, so no call can match it")
    properties = schema.get("properties") or {}
    if not isinstance(properties, Mapping) or not all(isinstance(p, Mapping) for p in properties.values()):
        raise ToolDefinitionError(f"{what}: its argument schema's properties are not schemas")
    missing = set(schema.get("required", [])) - set(properties)
    if missing:
        raise ToolDefinitionError(f"{what}: its schema requires {sorted(missing)}, which it does not describe")
    return schema


def spec_from_schema(name: str, description: str, schema: Mapping[str, Any], tag_like_input: bool = False) -> ToolSpec:
    """The prompt rule, one-sentence rule and corrective hint of a tool, from its name, description and schema."""
    returns = "the result comes back between <response> and </response>."
    if (argument := text_argument(schema)) is not None:
        call, what = f"<{name}> {argument} </{name}>", f"the {argument}"
    else:
        properties = schema.get("properties") or {}
        fields = ", ".join(f'"{key}": {_json_type(prop)}' for key, prop in properties.items())
        call, what = f"<{name}> {{{fields}}} </{name}>", "its arguments as a JSON object"
        returns = f"arguments are JSON; {returns}" if properties else returns
    return ToolSpec(
        name=name,
        rule=f"{description} Call it with {call}; {returns}",
        terse_rule=f"{_first_sentence(description)} Write {call}.",
        hint=f"If I want to use {name}, I should put {what} between <{name}> and </{name}>.",
        tag_like_input=tag_like_input,
        description=description,
        parameters=json.dumps(dict(schema)),
    )


def in_format(spec: ToolSpec, config: ToolsConfig) -> ToolSpec:
    """``spec`` with the corrective hint of the run's call format: a native call is JSON in ``<tool_call>``, so a
    wrong one must not be told to use the tool's tags."""
    if config.call_format != "native":
        return spec
    call = f'<{TOOL_CALL}>{{"name": "{spec.name}", "arguments": <its arguments as a JSON object>}}</{TOOL_CALL}>'
    return dataclasses.replace(spec, hint=f"If I want to use {spec.name}, I should write {call}.")


def parse_arguments(tool_input: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of a call: the raw text for a one-text-argument tool, else a JSON object (ValueError)."""
    if (argument := text_argument(schema)) is not None:
        return {argument: tool_input}
    if not (schema.get("properties") or {}) and not tool_input.strip():
        return {}
    try:
        value = json.loads(tool_input)
    except json.JSONDecodeError as error:
        raise ValueError(f"the input is not JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(value, dict):
        raise ValueError(f"the input is JSON {type(value).__name__}, not an object of arguments")
    return value


def result_text(value: Any) -> ToolResult:
    """What a function returned, as a result: a ToolResult as is, a string as its text, anything else as JSON."""
    if isinstance(value, ToolResult):
        return value
    if isinstance(value, str):
        return ToolResult(value)
    return ToolResult("" if value is None else pydantic_core.to_json(value, fallback=str).decode())


def argument_error(name: str, spec: ToolSpec, error: Exception) -> ToolResult:
    """A call the model wrote wrong: what was wrong and how to call the tool, for the model to read."""
    return ToolResult(f"[Invalid call of {name}: {error}. {spec.hint}]", ok=False, error=f"invalid arguments: {error}")


# --- functions --------------------------------------------------------------------------------------------------


def _arguments_model(function: Callable[..., Any], what: str) -> type[pydantic.BaseModel]:
    """A pydantic model of the function's parameters: each needs a type hint; no ``*args``/``**kwargs``."""
    try:
        hints = typing.get_type_hints(function, include_extras=True)
        parameters = inspect.signature(function).parameters.values()
    except (NameError, TypeError, ValueError) as error:
        raise ToolDefinitionError(f"{what}: its signature cannot be read ({error})") from None
    fields: dict[str, Any] = {}
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD, parameter.POSITIONAL_ONLY):
            raise ToolDefinitionError(f"{what}: parameter {parameter.name!r} must be a named argument")
        if parameter.name not in hints:
            raise ToolDefinitionError(f"{what}: parameter {parameter.name!r} has no type hint")
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (hints[parameter.name], default)
    try:
        model = pydantic.create_model(f"{function.__name__}_arguments", __config__={"extra": "forbid"}, **fields)
        model.model_json_schema()
    except (pydantic.PydanticSchemaGenerationError, pydantic.errors.PydanticInvalidForJsonSchema) as error:
        first = str(error).splitlines()[0]
        raise ToolDefinitionError(f"{what}: its arguments have no JSON schema the model can write ({first})") from None
    return model


class FunctionTool:
    """A user's function as a tool: arguments parsed and checked, a sync function run in a thread (the run's event
    loop never blocks), the return value as text."""

    def __init__(self, function: Callable[..., Any], spec: ToolSpec, model: type[pydantic.BaseModel]) -> None:
        self.name = spec.name
        self.function = function
        self.spec = spec
        self.model = model
        self.schema = model.model_json_schema()

    async def call(self, tool_input: str) -> ToolResult:
        try:
            arguments = self.model.model_validate(parse_arguments(tool_input, self.schema))
        except (ValueError, pydantic.ValidationError) as error:
            return argument_error(self.name, self.spec, _short(error))
        kwargs = {key: getattr(arguments, key) for key in type(arguments).model_fields}
        if inspect.iscoroutinefunction(self.function):
            return result_text(await self.function(**kwargs))
        return result_text(await asyncio.to_thread(self.function, **kwargs))

    async def aclose(self) -> None:
        return None


def _short(error: Exception) -> Exception:
    """A validation error in one line: ``value: Input should be a valid number``."""
    if isinstance(error, pydantic.ValidationError):
        parts = [f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in error.errors()]
        return ValueError("; ".join(parts))
    return error


def function_tool(function: Callable[..., Any], origin: str) -> ToolDef:
    """A typed, documented function as a tool named after it."""
    what = f"tool {origin}"
    name = getattr(function, "__name__", "")
    description = _description(function.__doc__, what)
    model = _arguments_model(function, what)
    schema = check_schema(model.model_json_schema(), what)
    spec = spec_from_schema(name, description, schema)
    return ToolDef(spec, lambda config: FunctionTool(function, in_format(spec, config), model), origin, schema)


# --- Tool classes -----------------------------------------------------------------------------------------------


def class_tool(cls: type, origin: str) -> ToolDef:
    """A ``Tool`` class as a tool: ``name``, ``async call(tool_input: str)``, a docstring (or its own ``rule``,
    ``terse_rule`` and ``hint``), optionally ``input_name`` (what goes between its tags, "input") and
    ``tag_like_input``; built with no arguments once per registry."""
    what = f"tool {origin}"
    name = getattr(cls, "name", None)
    if not isinstance(name, str):
        raise ToolDefinitionError(f"{what}: a Tool class needs a class attribute `name` (its tag)")
    if not inspect.iscoroutinefunction(getattr(cls, "call", None)):
        raise ToolDefinitionError(f"{what}: a Tool class needs `async def call(self, tool_input: str) -> ToolResult`")
    try:
        inspect.signature(cls).bind()
    except TypeError:
        raise ToolDefinitionError(f"{what}: a Tool class must be constructible without arguments") from None
    argument = str(getattr(cls, "input_name", "input"))
    schema = {"type": "object", "properties": {argument: {"type": "string"}}, "required": [argument]}
    tag_like = bool(getattr(cls, "tag_like_input", False))
    own = {key: cls.__dict__.get(key) for key in ("rule", "terse_rule", "hint")}
    if all(isinstance(value, str) for value in own.values()):
        rule, terse, hint = own["rule"], own["terse_rule"], own["hint"]
        doc = cls.__dict__.get("__doc__")
        description = _description(doc, what) if doc and doc.strip() else rule
        spec = ToolSpec(name, rule, terse, hint, tag_like, description, json.dumps(schema))  # type: ignore[arg-type]
    else:
        spec = spec_from_schema(name, _description(cls.__dict__.get("__doc__"), what), schema, tag_like)
    return ToolDef(spec, lambda _config: _with_aclose(cls()), origin, None)


def _with_aclose(tool: Any) -> Tool:
    """A user's tool without ``aclose`` gets a no-op one: the registry closes every tool at the end of a run."""
    if not hasattr(tool, "aclose"):

        async def aclose() -> None:
            return None

        tool.aclose = aclose
    return tool


# --- references in the config -----------------------------------------------------------------------------------


def _entry_point(name: str) -> Any:
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not found:
        raise ToolDefinitionError(
            f"tools.extra {name!r}: no `{ENTRY_POINT_GROUP}` entry point of that name is installed "
            "(an import path is written module:name)"
        )
    return next(iter(found)).load()


def _import(reference: str) -> Any:
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise ToolDefinitionError(
            f"tools.extra {reference!r}: importing {module_name} failed: {type(error).__name__}: {error}"
        ) from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ToolDefinitionError(f"tools.extra {reference!r}: {module_name} has no {attribute!r}") from None


def load_tool(reference: str) -> ToolDef:
    """The tool a ``tools.extra`` entry names: ``module:function``, ``module:ToolClass`` or an entry point's name."""
    try:
        target = _import(reference) if ":" in reference else _entry_point(reference)
    except ToolDefinitionError:
        raise
    except Exception as error:  # an entry point whose module fails to import
        raise ToolDefinitionError(
            f"tools.extra {reference!r}: loading failed: {type(error).__name__}: {error}"
        ) from None
    if isinstance(target, ToolDef):
        return target
    if inspect.isclass(target):
        return class_tool(target, reference)
    if inspect.isfunction(target) or inspect.iscoroutinefunction(target):
        return function_tool(target, reference)
    raise ToolDefinitionError(f"tools.extra {reference!r}: not a function or a Tool class ({type(target).__name__})")
