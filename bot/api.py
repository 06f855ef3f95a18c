"""Read-only HTTP views: health, readiness, metrics and the incidents API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlmodel import Session

from bot.db import reading
from bot.errors import NotFound
from bot.incidents import postmortem, store
from bot.incidents.models import IncidentDetail, IncidentPublic

if TYPE_CHECKING:
    from bot.services import Services
    from bot.slack.socket_mode import SocketMode

__all__ = ["router"]

router = APIRouter()


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    services = _services(request)

    def ping() -> None:
        with Session(services.engine) as session:
            session.exec(sa.select(1))  # type: ignore[call-overload]

    # Socket Mode: the socket's state is reported, not required: alerts are accepted and
    # recorded while Slack is unreachable (bot/slack/socket_mode.py).
    socket: SocketMode | None = getattr(request.app.state, "socket", None)
    slack = {"slack": socket.status()} if socket is not None else {}
    try:
        with anyio.fail_after(5):
            await anyio.to_thread.run_sync(ping, abandon_on_cancel=True)
    except Exception as exc:
        body = {"status": "unavailable", "database": type(exc).__name__, **slack}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ready", **slack})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    registry = _services(request).metrics.registry
    body = await anyio.to_thread.run_sync(generate_latest, registry)
    return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/api/incidents")
async def list_incidents(
    request: Request,
    status: Annotated[str | None, Query(pattern="^(open|all)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, list[IncidentPublic]]:
    services = _services(request)

    def load() -> list[IncidentPublic]:
        with reading(services.engine) as session:
            rows = store.list_incidents(session, open_only=status == "open", limit=limit, offset=offset)
            return [IncidentPublic.of(i) for i in rows]

    return {"incidents": await anyio.to_thread.run_sync(load)}


@router.get("/api/incidents/{ref}", response_model=None)
async def get_incident(request: Request, ref: str) -> IncidentDetail | JSONResponse:
    services = _services(request)

    def load() -> IncidentDetail:
        with reading(services.engine) as session:
            return store.detail(session, store.get_incident(session, ref))

    try:
        return await anyio.to_thread.run_sync(load)
    except NotFound as exc:
        return JSONResponse({"error": exc.message}, status_code=404)


@router.get("/api/incidents/{ref}/postmortem", response_model=None)
async def get_postmortem(request: Request, ref: str) -> PlainTextResponse | JSONResponse:
    """The postmortem draft in Markdown, rendered from the current record."""
    services = _services(request)

    def render() -> str:
        with reading(services.engine) as session:
            return postmortem.load_and_render(session, ref)[1]

    try:
        text = await anyio.to_thread.run_sync(render)
    except NotFound as exc:
        return JSONResponse({"error": exc.message}, status_code=404)
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")
