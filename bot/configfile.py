"""Configuration files (runbooks, the action policy, routing): YAML with line numbers, and
pydantic's validation errors as `file:line: message`.

Every error an author sees is `file:line: message`, with the line of the offending
key or value. PyYAML's composed node tree keeps the marks that plain `safe_load` throws
away, so the file is composed once, constructed into Python data for validation, and the
node tree is kept to answer "which line is `actions[1].replicas`?" afterwards.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

__all__ = [
    "Loc",
    "SourceMap",
    "YamlProblem",
    "compose_yaml",
    "describe_kind",
    "format_loc",
    "validation_errors",
]

Loc = Sequence[str | int]


@dataclass(frozen=True)
class YamlProblem:
    line: int
    message: str


@dataclass(frozen=True)
class SourceMap:
    """Line lookup for one YAML document; `display` is the path shown in messages."""

    display: str
    root: yaml.Node | None

    def _walk(self, loc: Loc) -> tuple[yaml.Node | None, yaml.Node | None]:
        node, key_node = self.root, None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                        node, key_node = value, key
                        break
                # A part that is not a key (a pydantic union tag, or a missing key) leaves us
                # on the enclosing mapping, which is the best line we have for it.
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if 0 <= part < len(node.value):
                    node, key_node = node.value[part], None
                else:
                    break
            else:
                break
        return node, key_node

    def line(self, loc: Loc, *, prefer_key: bool = False) -> int:
        """1-based line of the value at `loc` (or of its key), else of its nearest ancestor."""
        node, key_node = self._walk(loc)
        if prefer_key and key_node is not None:
            return key_node.start_mark.line + 1
        if node is None:
            return 1
        return node.start_mark.line + 1

    def template_line(self, loc: Loc, template_lineno: int | None) -> int:
        """Line of line `template_lineno` inside the string at `loc`.

        Exact for literal block scalars (`|`), whose lines are the template's lines; other
        scalar styles fold or escape line breaks, so their start line is the best answer.
        """
        node, _ = self._walk(loc)
        if node is None:
            return 1
        start = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode) and node.style == "|" and template_lineno:
            return start + template_lineno
        if isinstance(node, yaml.ScalarNode) and node.style == ">":
            return start + 1
        return start

    def where(self, loc: Loc, *, prefer_key: bool = False) -> str:
        return f"{self.display}:{self.line(loc, prefer_key=prefer_key)}"


def format_loc(loc: Loc) -> str:
    """`('actions', 1, 'replicas')` -> `actions[1].replicas`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def compose_yaml(text: str, display: str) -> tuple[Any, SourceMap, list[YamlProblem]]:
    """Parse one YAML document; problems (syntax, several documents, duplicate keys) carry lines.

    On a syntax error the data is None. Duplicate keys are reported but not fatal: PyYAML
    keeps the last value, which is what most YAML tools do, yet it is almost always a
    mistake worth a line in `check`.
    """
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        except yaml.MarkedYAMLError as exc:
            return None, SourceMap(display, None), [_yaml_problem(exc)]
        except yaml.YAMLError as exc:
            return None, SourceMap(display, None), [YamlProblem(1, f"invalid YAML: {exc}")]
    finally:
        loader.dispose()
    problems: list[YamlProblem] = []
    if node is not None:
        _find_duplicate_keys(node, problems)
    return data, SourceMap(display, node), problems


def _find_duplicate_keys(node: yaml.Node, problems: list[YamlProblem]) -> None:
    stack = [node]
    seen_nodes: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen_nodes:  # aliases can make the graph revisit a node
            continue
        seen_nodes.add(id(current))
        if isinstance(current, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode):
                    line = key.start_mark.line + 1
                    if key.value in first and key.value != "<<":
                        problems.append(
                            YamlProblem(
                                line, f"duplicate key {key.value!r} (first at line {first[key.value]})"
                            )
                        )
                    else:
                        first[key.value] = line
                stack.append(value)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)


def _yaml_problem(exc: yaml.MarkedYAMLError) -> YamlProblem:
    """Point at where the broken construct starts (an unclosed quote or bracket), which is
    where the author has to look, and say where the parser noticed."""
    problem = exc.problem or "syntax error"
    found = exc.problem_mark
    start = exc.context_mark
    if start is not None and exc.context:
        noticed = (
            f" (noticed at line {found.line + 1}, column {found.column + 1})" if found is not None else ""
        )
        return YamlProblem(start.line + 1, f"invalid YAML: {exc.context}: {problem}{noticed}")
    if found is not None:
        return YamlProblem(found.line + 1, f"invalid YAML: {problem} (column {found.column + 1})")
    return YamlProblem(1, f"invalid YAML: {problem}")


# A loader's own wording for some errors: given pydantic's error and the path into the data,
# the (line, message) to show, or None for the common wording below.
SpecialCase = Callable[[ErrorDetails, "tuple[str | int, ...]", SourceMap], "tuple[int, str] | None"]


def validation_errors(
    exc: ValidationError,
    source: SourceMap,
    data: Any,
    *,
    model: type[BaseModel],
    special: SpecialCase | None = None,
) -> list[str]:
    """pydantic's errors for `data` (composed from `source`) as `file:line: path: message`,
    in line order, one per mistake: an unknown key names the closest allowed key (and then its
    "missing" twin goes unsaid), a list whose every entry is invalid lets the entries speak."""
    entries: list[tuple[int, str]] = []
    errors = exc.errors(include_url=False)
    paths = [_data_path(tuple(err["loc"]), data) for err in errors]
    suggested = {
        (*loc[:-1], close): close
        for err, loc in zip(errors, paths, strict=True)
        if err["type"] == "extra_forbidden"
        for close in _close_key(model, data, loc)
    }
    for err, loc in zip(errors, paths, strict=True):
        kind = err["type"]
        if kind == "too_short" and any(other[: len(loc)] == loc and other != loc for other in paths):
            continue  # a list whose entries are all invalid: the entries' errors say more
        if kind == "missing" and loc in suggested:
            continue
        own = special(err, loc, source) if special else None
        if own is not None:
            line, message = own
        elif kind == "extra_forbidden":
            key = str(loc[-1])
            allowed = allowed_keys(model, data, loc[:-1])
            close = _close_key(model, data, loc)
            hint = (
                f"; did you mean {close[0]!r}?"
                if close
                else f" (allowed: {', '.join(allowed)})"
                if allowed
                else ""
            )
            where = f"{format_loc(loc[:-1])}: " if loc[:-1] else ""
            line = source.line(loc, prefer_key=True)
            message = f"{where}unknown key {key!r}{hint}"
        elif kind == "missing":
            where = f"{format_loc(loc[:-1])}: " if loc[:-1] else ""
            line = source.line(loc[:-1])
            message = f"{where}missing required key {str(loc[-1])!r}"
        elif kind == "too_short":
            line = source.line(loc)
            message = f"{format_loc(loc)}: needs at least one entry"
        elif kind in ("tuple_type", "list_type"):
            line = source.line(loc)
            message = (
                f"{format_loc(loc)}: expected a list, e.g. [a, b], found {describe_kind(err.get('input'))}"
            )
        elif kind == "model_type":
            line = source.line(loc)
            message = (
                f"{format_loc(loc)}: expected a mapping (key: value), found {describe_kind(err.get('input'))}"
            )
        elif kind == "string_type" and isinstance(err.get("input"), dict | list):
            found = describe_kind(err["input"])
            hint = "; quote the text: in YAML an unquoted ': ' starts a key" if found == "a mapping" else ""
            line = source.line(loc)
            message = f"{format_loc(loc)}: expected text, found {found}{hint}"
        else:
            line = source.line(loc)
            text = str(err["msg"]).removeprefix("Value error, ")
            message = f"{format_loc(loc)}: {text}" if loc else text
        entry = (line, f"{source.display}:{line}: {message}")
        if entry not in entries:
            entries.append(entry)
    return [text for _, text in sorted(entries, key=lambda e: e[0])]


def describe_kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {value!r:.40}"


def _close_key(model: type[BaseModel], data: Any, loc: tuple[str | int, ...]) -> list[str]:
    return difflib.get_close_matches(str(loc[-1]), allowed_keys(model, data, loc[:-1]), n=1)


def _data_path(loc: tuple[Any, ...], data: Any) -> tuple[str | int, ...]:
    """`loc` without the tags pydantic adds for union members: only the parts that are keys
    or indexes of the data, and the last part (a missing or unknown key)."""
    out: list[str | int] = []
    node = data
    for position, part in enumerate(loc):
        last = position == len(loc) - 1
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            out.append(part)
            node = node[part]
        elif last:
            out.append(part)
    return tuple(out)


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    origin = get_origin(annotation)
    if origin in (Union, UnionType, tuple, list, Annotated):
        for arg in get_args(annotation):
            yield from _models_in(arg)


def _fits(model: type[BaseModel], node: Any) -> bool:
    """Whether `node` carries the tag of this member of a discriminated union (a Literal
    field such as `action: Literal["scale"]`)."""
    if not isinstance(node, dict):
        return False
    for name, info in model.model_fields.items():
        if get_origin(info.annotation) is Literal:
            return node.get(name) in get_args(info.annotation)
    return False


def allowed_keys(model: type[BaseModel], data: Any, loc: Sequence[str | int]) -> list[str]:
    """The keys allowed at `loc`, found by walking the model's fields along the data (for a
    union of models, the member whose tag the data carries)."""
    node: Any = data
    models = [model]
    for part in loc:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            continue
        current = _pick(models, node)
        info = current.model_fields.get(part) if current else None
        models = list(_models_in(info.annotation)) if info else []
        if not models:
            return []
        node = node.get(part) if isinstance(node, dict) else None
    current = _pick(models, node)
    return list(current.model_fields) if current else []


def _pick(models: list[type[BaseModel]], node: Any) -> type[BaseModel] | None:
    if len(models) == 1:
        return models[0]
    return next((m for m in models if _fits(m, node)), None)
