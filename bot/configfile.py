"""YAML with line numbers: where in the file each value of a runbook came from.

Every error a runbook author sees is `file:line: message`, with the line of the offending
key or value. PyYAML's composed node tree keeps the marks that plain `safe_load` throws
away, so the file is composed once, constructed into Python data for validation, and the
node tree is kept to answer "which line is `actions[1].replicas`?" afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["Loc", "SourceMap", "YamlProblem", "compose_yaml", "format_loc"]

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
