"""A real MLflow tracking server for tests: PyPI `mlflow` from its own environment
(`make mlflow-env` puts it in .venv-mlflow), a SQLite backend store, on a free loopback port.

Test data goes in through MLflow's REST API, as a training pipeline's client would put it:
a run with logged metrics, a model version registered from it, an alias pointed at it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.promstack import _parent_death_signal, free_port

ROOT = Path(__file__).resolve().parents[2]
MLFLOW_BIN = Path(os.environ.get("INCIDENT_BOT_TEST_MLFLOW_VENV", ROOT / ".venv-mlflow")) / "bin" / "mlflow"
START_TIMEOUT = 90.0


@dataclass
class MlflowServer:
    workdir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.url}/api/2.0/mlflow"

    def start(self) -> MlflowServer:
        if not MLFLOW_BIN.exists():
            raise RuntimeError(f"{MLFLOW_BIN} is missing: run `make mlflow-env` (make test does)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / "mlflow.log"
        for _attempt in range(3):
            self.port = free_port()
            argv = [
                str(MLFLOW_BIN),
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.workdir / 'mlflow.db'}",
                "--default-artifact-root",
                str(self.workdir / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ]
            env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
            # MLflow 3 otherwise starts a job runner with a dozen worker processes (GenAI
            # scorers, trace rollups) the registry does not need: ~1.5 GB and steady CPU.
            env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
            with log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    env=env,
                    start_new_session=True,  # its own process group: stop() ends its workers too
                    preexec_fn=_parent_death_signal(),  # and it ends if pytest is killed
                )
            if self._wait_healthy(log_path):
                return self
            self.stop()
        raise RuntimeError(f"MLflow did not start:\n{log_path.read_text()[-3000:]}")

    def _wait_healthy(self, log_path: Path) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "address already in use" in log_path.read_text().lower():
                    return False
                raise RuntimeError(
                    f"MLflow exited with {self.process.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return True
            time.sleep(0.2)
        raise RuntimeError(f"MLflow not healthy after {START_TIMEOUT:.0f}s:\n{log_path.read_text()[-3000:]}")

    def requests(self, method: str, path: str) -> int:
        """How many `method path` requests MLflow has answered so far (its uvicorn access log)."""
        line = f'"{method} /api/2.0/mlflow/{path} HTTP/1.1"'
        return (self.workdir / "mlflow.log").read_text().count(line)

    def stop(self) -> None:
        """SIGTERM to the server's process group (it forks uvicorn), then SIGKILL."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # a worker that outlived the server

    # ------------------------------------------------------------------ test data, via REST
    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(f"{self.api}/{path}", json=body, timeout=30)
        if response.status_code >= 400:
            raise RuntimeError(f"MLflow POST {path} answered {response.status_code}: {response.text}")
        data: dict[str, Any] = response.json()
        return data

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        response = httpx.get(f"{self.api}/{path}", params=params, timeout=30)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def create_model(self, name: str) -> None:
        self._post("registered-models/create", {"name": name})

    def register_version(self, name: str, metrics: dict[str, float]) -> tuple[str, str]:
        """A training run with `metrics` logged and a new version of `name` from it:
        (version, run_id)."""
        now = int(time.time() * 1000)
        run = self._post("runs/create", {"experiment_id": "0", "start_time": now})["run"]["info"]
        run_id = str(run["run_id"])
        for key, value in metrics.items():
            self._post(
                "runs/log-metric", {"run_id": run_id, "key": key, "value": value, "timestamp": now, "step": 0}
            )
        self._post("runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": now})
        version = self._post(
            "model-versions/create", {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id}
        )["model_version"]["version"]
        return str(version), run_id

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._post("registered-models/alias", {"name": name, "alias": alias, "version": version})

    def alias(self, name: str, alias: str) -> str:
        """The version `name@alias` points to, read back from MLflow."""
        data = self._get("registered-models/alias", {"name": name, "alias": alias})
        return str(data["model_version"]["version"])


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    try:
        yield server
    finally:
        server.stop()
