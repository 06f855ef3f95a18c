"""The three PATCH flavours the Kubernetes API server accepts, on plain JSON documents.

The stand-in (`kube_api.py`) must answer PATCH the way the API server does, because the bot's
rollback is a JSON Patch (RFC 6902, what `kubectl rollout undo` sends), while the Python client
turns any dict body into a strategic merge patch. Getting these wrong would let a test pass
against the stand-in and fail against a cluster.

- `apply_json_patch`: RFC 6902 (add, remove, replace, move, copy, test), all-or-nothing.
- `apply_merge_patch`: RFC 7386: objects merge, `null` deletes, lists are replaced.
- `apply_strategic_merge_patch`: the subset of Kubernetes' strategic merge patch that pod
  templates need: objects merge, `null` deletes, lists of named things (containers, env,
  volumes, ports, ...) merge by their merge key, `$patch: replace|delete` directives, other
  lists are replaced; `$retainKeys` and `$setElementOrder` directives are accepted and ignored.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "SMP_MERGE_KEYS",
    "PatchError",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_strategic_merge_patch",
]

# Merge keys of the list fields that appear in Deployment, ReplicaSet and Pod objects, from the
# `patchMergeKey` struct tags of k8s.io/api (core/v1 and meta/v1 types.go).
SMP_MERGE_KEYS: Mapping[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "ownerReferences": "uid",
    "conditions": "type",
}


class PatchError(ValueError):
    """The patch cannot be applied to this document (the API server answers 422 or 400)."""


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}: must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _index(container: list[Any], part: str, *, for_add: bool) -> int:
    if part == "-" and for_add:
        return len(container)
    if not part.isdigit() or (len(part) > 1 and part.startswith("0")):
        raise PatchError(f"invalid array index {part!r}")
    index = int(part)
    limit = len(container) if for_add else len(container) - 1
    if index > limit:
        raise PatchError(f"array index {index} out of bounds")
    return index


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"doc is missing path: {path}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, for_add=False)]
        else:
            raise PatchError(f"doc is missing path: {path}")
    return node


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"doc is missing key: {path}")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_add=False)]
    raise PatchError(f"doc is missing path: {path}")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_add=True), value)
    else:
        raise PatchError(f"add operation does not apply: doc is missing path: {path}")
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("remove operation does not apply to the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"remove operation does not apply: doc is missing key: {path}")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, for_add=False))
    raise PatchError(f"remove operation does not apply: doc is missing path: {path}")


def _replace(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"replace operation does not apply: doc is missing key: {path}")
        parent[last] = value
    elif isinstance(parent, list):
        parent[_index(parent, last, for_add=False)] = value
    else:
        raise PatchError(f"replace operation does not apply: doc is missing path: {path}")
    return doc


def apply_json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902 on a deep copy of `document`; the first failing operation fails the whole patch."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(document)
    for number, op in enumerate(operations):
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise PatchError(f"operation {number} has no 'op'")
        kind = op["op"]
        path = op.get("path")
        if not isinstance(path, str):
            raise PatchError(f"operation {number} ({kind}) has no 'path'")
        if kind in {"add", "replace", "test"} and "value" not in op:
            raise PatchError(f"operation {number} ({kind}) has no 'value'")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "replace":
            doc = _replace(doc, path, copy.deepcopy(op["value"]))
        elif kind in {"move", "copy"}:
            source = op.get("from")
            if not isinstance(source, str):
                raise PatchError(f"operation {number} ({kind}) has no 'from'")
            if kind == "move":
                doc, value = _remove(doc, source)
            else:
                value = copy.deepcopy(_get(doc, source))
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchError(f"unexpected kind of operation: {kind}")
    return doc


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; returns a new document."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def _merge_list(original: Sequence[Any], patch: Sequence[Any], merge_key: str) -> list[Any]:
    result = [copy.deepcopy(item) for item in original]
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise PatchError(f"map in a list merged by {merge_key!r} has no {merge_key!r}")
        key_value = item[merge_key]
        position = next(
            (i for i, old in enumerate(result) if isinstance(old, dict) and old.get(merge_key) == key_value),
            None,
        )
        directive = item.get("$patch")
        if directive == "delete":
            if position is not None:
                result.pop(position)
            continue
        if directive == "replace" or position is None:
            replacement = _strip_directives(item)
            if position is None:
                result.append(replacement)
            else:
                result[position] = replacement
            continue
        result[position] = _smp(result[position], item)
    return result


def _smp(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return _strip_directives(patch)
    if patch.get("$patch") == "delete":
        return {}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # $retainKeys, $setElementOrder/...: ordering hints, no effect on content
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in SMP_MERGE_KEYS and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value, SMP_MERGE_KEYS[key])
        elif isinstance(value, dict):
            result[key] = _smp(result.get(key), value)
        else:
            result[key] = _strip_directives(copy.deepcopy(value))
    return result


def apply_strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Kubernetes strategic merge patch (the subset described in the module docstring)."""
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object")
    return _smp(target, patch)
