"""The PromQL expression of an alert, read back from its `generatorURL`.

Alertmanager passes through whatever the rule evaluator put there, so several shapes occur
(all seen in real payloads or in the evaluators' sources):

* Prometheus 2.x and 3.x (`strutil.TableLinkForExpression`): `<external URL>/graph?g0.expr=
  <url.QueryEscape(expr)>&g0.tab=1`; the external URL may carry a path prefix
  (`/metrics/viewer/graph?...`) or be missing entirely (a relative URL). Prometheus 3's UI
  also links `/query?g0.expr=...`. With several panels (`g0`, `g1`, ...) the lowest index wins.
* Thanos Ruler: the same `g0.expr`, plus extra panel parameters.
* Prometheus 1.x: `/graph#<url-encoded JSON [{"expr": "...", "tab": 1}]>` in the fragment.
* VictoriaMetrics vmui: `/vmui/#/?g0.expr=...` (the query string after `#`).
* vmalert or Grafana sending Grafana Explore links: `/explore?left=<JSON with
  queries[].expr>` or the newer `panes=<JSON {pane: {queries: [{expr}]}}>`.
* A plain `expr=` or `query=` parameter (some proxies and tools).

vmalert's default `/vmalert/alert?group_id=..&alert_id=..` carries no expression: None.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["expr_from_generator_url"]

_PANEL = re.compile(r"^g(\d+)\.expr$")


def _from_params(query: str) -> str | None:
    if "&amp;" in query:  # an HTML-escaped URL pasted from a web page or template
        query = query.replace("&amp;", "&")
    params = parse_qsl(query, keep_blank_values=False)
    panels: list[tuple[int, str]] = []
    plain: str | None = None
    explore: str | None = None
    for name, value in params:
        match = _PANEL.match(name)
        if match:
            panels.append((int(match.group(1)), value))
        elif name in ("expr", "query") and plain is None:
            plain = value
        elif name in ("left", "panes") and explore is None:
            explore = _from_json(value)
    if panels:
        return min(panels)[1]
    return plain or explore


def _from_json(text: str) -> str | None:
    """The first `expr` found in a JSON document (Grafana Explore state, Prometheus 1.x)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return _find_expr(doc)


def _find_expr(node: Any) -> str | None:
    if isinstance(node, dict):
        expr = node.get("expr")
        if isinstance(expr, str) and expr.strip():
            return expr
        children: Any = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _find_expr(child)
        if found:
            return found
    return None


def _from_fragment(fragment: str) -> str | None:
    if not fragment:
        return None
    decoded = unquote(fragment)
    if decoded.lstrip().startswith(("[", "{")):
        return _from_json(decoded)
    # vmui and other single-page apps: "#/?g0.expr=..." or "#/path?expr=..."
    _, sep, query = fragment.partition("?")
    return _from_params(query) if sep else None


def expr_from_generator_url(url: str | None) -> str | None:
    """The PromQL expression in `url` (absolute or relative), or None when it holds none."""
    if not url or not url.strip():
        return None
    parts = urlsplit(url.strip())
    expr = _from_params(parts.query) or _from_fragment(parts.fragment)
    if expr is None:
        return None
    expr = expr.strip()
    return expr or None
