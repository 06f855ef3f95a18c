"""Running a local stand-in server in the background: the plumbing the Slack and Kubernetes
stand-ins and the metrics exporter share (a daemon thread that polls often, so `stop()` is
quick; shutdown that also drops kept-alive connections where the server tracks them)."""

from __future__ import annotations

import threading
from socketserver import BaseServer

__all__ = ["serve_in_background", "shut_down"]


def serve_in_background(server: BaseServer, *, name: str) -> threading.Thread:
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
    )
    thread.start()
    return thread


def shut_down(server: BaseServer, thread: threading.Thread | None, *, timeout: float = 10.0) -> None:
    server.shutdown()
    close_connections = getattr(server, "close_connections", None)
    if callable(close_connections):
        close_connections()
    server.server_close()
    if thread is not None:
        thread.join(timeout=timeout)
