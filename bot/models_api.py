"""`GET /api/models` and `GET /api/models/{model}`: per-model KPIs over a window, as JSON.

Thin: the window is parsed (a bad one is a 422 naming it), the report comes from
`KpiService` (cached briefly, computed in a worker thread under a deadline), and each model
is its scorecard's JSON. A KPI that could not be computed is null, and `unavailable` says why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bot.kpis.service import KpiReport, KpiService
from bot.kpis.window import Window, WindowError

if TYPE_CHECKING:
    from bot.services import Services

__all__ = ["API_BUDGET_SECONDS", "router"]

router = APIRouter()

#: How long the API waits for Prometheus before answering with what it has.
API_BUDGET_SECONDS = 10.0


def _kpis(request: Request) -> KpiService:
    services: Services = request.app.state.services
    return services.kpis


async def _report(request: Request, window_text: str | None) -> KpiReport | JSONResponse:
    try:
        window = Window.parse(window_text)
    except WindowError as exc:
        return JSONResponse({"error": exc.message, "field": "window"}, status_code=422)
    service = _kpis(request)
    return await anyio.to_thread.run_sync(
        lambda: service.report(window, budget=API_BUDGET_SECONDS), abandon_on_cancel=True
    )


def _meta(report: KpiReport) -> dict[str, Any]:
    return {
        "window": report.window.text,
        "computed_at": report.computed_at.isoformat(),
        "complete": report.complete,
        "problems": report.problems,
    }


@router.get("/api/models", response_model=None)
async def list_models(request: Request, window: str | None = None) -> dict[str, Any] | JSONResponse:
    report = await _report(request, window)
    if isinstance(report, JSONResponse):
        return report
    return {"models": [card.as_json() for card in report.models], **_meta(report)}


@router.get("/api/models/{model:path}", response_model=None)
async def get_model(
    request: Request, model: str, window: str | None = None, namespace: str | None = None
) -> dict[str, Any] | JSONResponse:
    report = await _report(request, window)
    if isinstance(report, JSONResponse):
        return report
    found = report.find(model, namespace)
    if not found:
        return JSONResponse({"error": f"no model {model!r} is served or described"}, status_code=404)
    if len(found) > 1:
        places = ", ".join(f"{c.namespace}/{c.model}" for c in found)
        return JSONResponse(
            {"error": f"{model!r} is served in several namespaces ({places}): add ?namespace=..."},
            status_code=409,
        )
    return {**found[0].as_json(), **_meta(report)}
