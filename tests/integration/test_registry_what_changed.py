"""An incident about a model registered in MLflow gets 'what changed in the model registry' in
its thread, read from a real MLflow tracking server: where the serving alias points, the
version before it (as the bot saw the alias move) and their runs' metrics side by side."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bot.config import Settings
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import RunningBot, run_bot, wait_until
from tests.support.mlflow import MlflowServer
from tests.support.payloads import alert, notification
from tests.support.promstack import free_port


def model_alert(model: str, *, group: str, **labels: str) -> dict[str, object]:
    item = alert(
        "ModelAccuracyDrop", severity="warning", starts_at=datetime.now(UTC), model_name=model, **labels
    )
    return notification(item, group_key=f'{{}}:{{model_name="{group}"}}')


def thread(slack: SlackStandIn, bot: RunningBot, number: int) -> Callable[[], list[str]]:
    ts = wait_until(lambda: bot.incident(number)["ts"], message=f"incident {number} posted")

    def texts() -> list[str]:
        return [
            json.dumps({"text": m.text, "blocks": m.blocks}, ensure_ascii=False)
            for m in slack.thread("C0INCIDENTS", ts)
        ]

    return texts


def test_thread_shows_the_alias_its_version_and_the_metrics_before(
    settings_for: Callable[..., Settings], slack: SlackStandIn, mlflow_server: MlflowServer
) -> None:
    mlflow_server.create_model("churn-xgb")
    v1, _ = mlflow_server.register_version("churn-xgb", {"accuracy": 0.93, "auc": 0.97})
    mlflow_server.set_alias("churn-xgb", "champion", v1)
    with run_bot(settings_for(mlflow_tracking_uri=mlflow_server.url)) as bot:
        # The bot sees champion at v1 (an earlier incident), then a new version takes the alias.
        assert bot.post_alert(model_alert("churn-xgb", group="first")).status_code == 200
        first = thread(slack, bot, 1)
        wait_until(lambda: [t for t in first() if "model registry" in t], message="first registry post")
        v2, run2 = mlflow_server.register_version("churn-xgb", {"accuracy": 0.84, "auc": 0.91})
        mlflow_server.set_alias("churn-xgb", "champion", v2)

        assert bot.post_alert(model_alert("churn-xgb", group="second")).status_code == 200
        second = thread(slack, bot, 2)
        text = wait_until(lambda: [t for t in second() if "model registry" in t], message="registry post")[0]
    assert f"`champion` points to *v{v2}*" in text
    assert f"from run `{run2}`" in text
    assert f"Before it: *v{v1}*" in text
    assert "the alias pointed there before" in text
    assert "*accuracy* 0.84 now, 0.93 before" in text
    assert "*auc* 0.91 now, 0.97 before" in text
    assert f"v{v2} was registered 0 min before the alert" in text
    assert f"/rollback model churn-xgb@champion` moves the alias back to v{v1}" in text


def test_the_version_before_is_where_the_alias_was_not_the_next_lower_number(
    settings_for: Callable[..., Settings], slack: SlackStandIn, mlflow_server: MlflowServer
) -> None:
    mlflow_server.create_model("fraud-lgbm")
    v1, _ = mlflow_server.register_version("fraud-lgbm", {"precision": 0.91})
    v2, _ = mlflow_server.register_version("fraud-lgbm", {"precision": 0.55})  # never served
    mlflow_server.set_alias("fraud-lgbm", "prod", v1)
    with run_bot(settings_for(mlflow_tracking_uri=mlflow_server.url)) as bot:
        labels = {"model_alias": "prod"}
        assert bot.post_alert(model_alert("fraud-lgbm", group="a", **labels)).status_code == 200
        first = thread(slack, bot, 1)
        text = wait_until(lambda: [t for t in first() if "model registry" in t], message="first post")[0]
        assert f"`prod` points to *v{v1}*" in text
        assert "Before it" not in text  # v1 is the first version: nothing before it

        v3, _ = mlflow_server.register_version("fraud-lgbm", {"precision": 0.80})
        mlflow_server.set_alias("fraud-lgbm", "prod", v3)
        assert bot.post_alert(model_alert("fraud-lgbm", group="b", **labels)).status_code == 200
        second = thread(slack, bot, 2)
        text = wait_until(lambda: [t for t in second() if "model registry" in t], message="second post")[0]
    assert v2 == "2"
    assert f"Before it: *v{v1}*" in text
    assert "*precision* 0.8 now, 0.91 before" in text


def test_a_model_the_registry_does_not_know_is_said_in_the_thread(
    settings_for: Callable[..., Settings], slack: SlackStandIn, mlflow_server: MlflowServer
) -> None:
    with run_bot(settings_for(mlflow_tracking_uri=mlflow_server.url)) as bot:
        assert bot.post_alert(model_alert("no-such-model", group="x")).status_code == 200
        texts = thread(slack, bot, 1)
        note = wait_until(lambda: [t for t in texts() if "Model registry" in t], message="registry note")[0]
    assert "model 'no-such-model' is not in the model registry" in note


def test_registry_down_the_incident_posts_and_the_thread_says_why(
    settings_for: Callable[..., Settings], slack: SlackStandIn
) -> None:
    nothing = f"http://127.0.0.1:{free_port()}"
    with run_bot(settings_for(mlflow_tracking_uri=nothing)) as bot:
        assert bot.post_alert(model_alert("churn-xgb", group="down")).status_code == 200
        texts = thread(slack, bot, 1)
        note = wait_until(lambda: [t for t in texts() if "waiting for MLflow" in t], message="waiting note")[
            0
        ]
        assert bot.incident(1)["status"] == "triggered"
    assert "unreachable" in note
    assert nothing.removeprefix("http://") in note


def test_a_served_name_is_mapped_to_its_registered_model_and_alias_by_the_models_file(
    tmp_path: Path, settings_for: Callable[..., Settings], slack: SlackStandIn, mlflow_server: MlflowServer
) -> None:
    # Served as `churn-served` (the alert's model_name); registered in MLflow as another name,
    # served through the `prod` alias. Only the models file knows.
    mlflow_server.create_model("churn-registered")
    v1, _ = mlflow_server.register_version("churn-registered", {"accuracy": 0.91})
    v2, run2 = mlflow_server.register_version("churn-registered", {"accuracy": 0.82})
    mlflow_server.set_alias("churn-registered", "prod", v2)
    models = tmp_path / "models.yaml"
    models.write_text(
        "models:\n  - model: churn-served\n    registered_model: churn-registered\n    alias: prod\n",
        encoding="utf-8",
    )
    settings = settings_for(mlflow_tracking_uri=mlflow_server.url, models_file=models)
    with run_bot(settings) as bot:
        assert bot.post_alert(model_alert("churn-served", group="mapped")).status_code == 200
        texts = thread(slack, bot, 1)
        text = wait_until(lambda: [t for t in texts() if "model registry" in t], message="registry post")[0]
    assert "churn-registered" in text
    assert f"`prod` points to *v{v2}*" in text
    assert f"from run `{run2}`" in text
    assert f"Before it: *v{v1}*" in text
    assert "*accuracy* 0.82 now, 0.91 before" in text
    assert f"/rollback model churn-registered@prod` moves the alias back to v{v1}" in text
