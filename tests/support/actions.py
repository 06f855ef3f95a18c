"""Shared pieces of the remediation tests: the Kubernetes stand-in seeded with a model-serving
Deployment, policy files, and a harness that opens incidents and reads what the bot did
(answers on response_url, thread messages, timeline events, action records, API requests)."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from bot.actions.kubernetes import deployment_state
from bot.actions.models import ActionRecord
from bot.sandbox.kube_api import KubeStandIn, RecordedRequest
from bot.sandbox.slack_api import SlackStandIn
from bot.sandbox.slack_models import Message, ResponsePost
from tests.support.botserver import RunningBot, wait_until
from tests.support.payloads import alert, notification
from tests.support.slack_requests import ALICE, Person, Sent, SlackSender, answer_text

NS = "llm-prod"
NAME = "vllm-llama"
TARGET = f"{NS}/{NAME}"
MODEL = "llama-3-8b"
CHANNEL = "C0INCIDENTS"

# alice and bob are in the stand-in's S0SRE user group; carol is not.
ONCALL_POLICY = """
defaults: {cooldown: 0s}
rules:
  - name: oncall
    actions: [rollback, scale, restart, silence]
    usergroups: [S0SRE]
    namespaces: ["llm-*"]
    replicas: {min: 1, max: 8}
"""


def seed_llama(kube: KubeStandIn, *, replicas: int = 2, gpus_per_pod: int = 0) -> None:
    """llama-3-8b served by vLLM in llm-prod: revisions v12, v13, and v14 (current, 20 min old)."""
    now = datetime.now(UTC)
    kube.add_deployment(
        NS,
        NAME,
        image="vllm/vllm-openai:v0.6.3",
        replicas=replicas,
        model=MODEL,
        model_version="v14",
        gpus_per_pod=gpus_per_pod,
        change_cause="model v14",
        created_at=now - timedelta(minutes=20),
        history=[
            {"model_version": "v12", "created_at": now - timedelta(days=9)},
            {"model_version": "v13", "change_cause": "model v13", "created_at": now - timedelta(days=2)},
        ],
    )


def write_policy(tmp_path: Path, text: str = ONCALL_POLICY) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def model_version(kube: KubeStandIn) -> str | None:
    return deployment_state(kube.deployment(NS, NAME)).model_version


@dataclass
class Harness:
    bot: RunningBot
    slack: SlackStandIn
    kube: KubeStandIn
    sender: SlackSender

    # ------------------------------------------------------------------ incidents
    def open_incident(
        self, *, group: str = "latency", generator_url: str | None = None, **labels: str
    ) -> dict[str, Any]:
        """Fire an alert on llm-prod/vllm-llama and wait for its root message in Slack."""
        item = alert(deployment=NAME, **labels)
        if generator_url is not None:
            item["generatorURL"] = generator_url
        key = self.bot.post_alert(notification(item, group_key=f"group-{group}")).json()["incident"]
        return wait_until(
            lambda: self.bot.incident(key)["ts"] and self.bot.incident(key), message=f"{key} posted"
        )

    def thread(self, incident: dict[str, Any]) -> list[Message]:
        return self.slack.thread(CHANNEL, incident["ts"])

    def thread_text(self, incident: dict[str, Any]) -> str:
        return html.unescape(
            "\n".join(m.text + json.dumps(m.blocks, ensure_ascii=False) for m in self.thread(incident))
        )

    def wait_thread(self, incident: dict[str, Any], text: str, *, timeout: float = 20.0) -> Message:
        def find() -> Message | None:
            for message in self.thread(incident):
                if text in html.unescape(message.text + json.dumps(message.blocks, ensure_ascii=False)):
                    return message
            return None

        found = wait_until(find, timeout=timeout, message=f"a thread message with {text!r}")
        assert found is not None
        return found

    def events(self, incident: dict[str, Any], kind: str = "action") -> list[dict[str, Any]]:
        return [e for e in self.bot.incident(incident["id"])["timeline"] if e["kind"] == kind]

    def wait_event(self, incident: dict[str, Any], text: str, *, timeout: float = 20.0) -> dict[str, Any]:
        found = wait_until(
            lambda: [e for e in self.events(incident) if text in e["text"]],
            timeout=timeout,
            message=f"a timeline event with {text!r}",
        )
        return found[0]

    # ------------------------------------------------------------------ Slack
    def command(self, command: str, text: str, *, user: Person = ALICE) -> Sent:
        sent = self.sender.command(text, user=user, command=command)
        assert sent.response.status_code == 200, sent.response.text
        return sent

    def answers(self, sent: Sent) -> list[ResponsePost]:
        return self.sender.responses(sent)

    def answer(self, sent: Sent, *, index: int = 0, timeout: float = 20.0) -> ResponsePost:
        found = wait_until(
            lambda: len(self.answers(sent)) > index and self.answers(sent),
            timeout=timeout,
            message=f"answer #{index + 1} on response_url",
        )
        return found[index]

    @staticmethod
    def text(post: ResponsePost) -> str:
        """What a person reads: Slack shows `&gt;` as `>`."""
        return html.unescape(answer_text(post.body))

    def click_answer(self, action_id: str, post: ResponsePost, *, user: Person = ALICE) -> Sent:
        sent = self.sender.click_in_answer(action_id, post, user=user)
        assert sent.response.status_code == 200, sent.response.text
        return sent

    def click(self, action_id: str, message: Message, *, user: Person = ALICE) -> Sent:
        sent = self.sender.click(action_id, message, user=user)
        assert sent.response.status_code == 200, sent.response.text
        return sent

    # ------------------------------------------------------------------ records and requests
    def records(self, **where: Any) -> list[ActionRecord]:
        with Session(self.bot.services.engine) as session:
            query = select(ActionRecord).order_by(col(ActionRecord.id))
            for name, value in where.items():
                query = query.where(getattr(ActionRecord, name) == value)
            return list(session.exec(query).all())

    def wait_record(
        self, predicate: Callable[[ActionRecord], bool], *, timeout: float = 20.0
    ) -> ActionRecord:
        found = wait_until(
            lambda: [r for r in self.records() if predicate(r)], timeout=timeout, message="an action record"
        )
        return found[0]

    def writes(self) -> list[RecordedRequest]:
        """Requests that would change the cluster (dry runs included)."""
        return [r for r in self.kube.requests if r.method in {"PATCH", "PUT", "POST", "DELETE"}]

    def real_writes(self) -> list[RecordedRequest]:
        return [r for r in self.writes() if r.query.get("dryRun") != "All"]
