"""The Workloads adapter against the Kubernetes stand-in, through the official client.

Each test asserts what a responder (or the bot's flows) would observe: the Deployment's state
after the action, the exact request the bot sent, and errors translated into the bot's error
tree with messages that say what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest

from bot.actions.changes import rollback_change
from bot.actions.kubernetes import (
    RBAC_REQUIREMENTS,
    AlreadyMatches,
    DeploymentPaused,
    KubernetesForbidden,
    PlanOutdated,
    RevisionNotFound,
    RolloutHistoryMissing,
    Workloads,
    equal_ignore_hash,
)
from bot.config import Settings
from bot.errors import (
    ConfigError,
    Conflict,
    NotFound,
    PayloadError,
    PermanentUpstreamError,
    RetryableUpstreamError,
)
from bot.sandbox.kube_api import KubeStandIn

NS = "llm-prod"
NAME = "vllm-llama"
REVISION = "deployment.kubernetes.io/revision"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def kube() -> Iterator[KubeStandIn]:
    with KubeStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def kubeconfig(kube: KubeStandIn, tmp_path: Path) -> Path:
    return kube.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def workloads(kubeconfig: Path) -> Iterator[Workloads]:
    with Workloads.from_environment(str(kubeconfig)) as adapter:
        yield adapter


def seed(kube: KubeStandIn, name: str = NAME, **kwargs: Any) -> dict[str, Any]:
    """llama-3-8b served by vLLM: v12 (3 days ago), v13 (2 days ago), v14 (current, 1 hour ago)."""
    options: dict[str, Any] = {
        "image": "vllm/vllm-openai:v0.6.3",
        "model": "llama-3-8b",
        "model_version": "v14",
        "replicas": 2,
        "change_cause": "model v14",
        "created_at": NOW - timedelta(hours=1),
        "history": [
            {"model_version": "v12", "created_at": NOW - timedelta(days=3)},
            {"model_version": "v13", "change_cause": "model v13", "created_at": NOW - timedelta(days=2)},
        ],
    }
    options.update(kwargs)
    return kube.add_deployment(NS, name, **options)


def writes(kube: KubeStandIn) -> list[Any]:
    return [r for r in kube.requests if r.method in {"PATCH", "PUT", "POST", "DELETE"}]


# ---------------------------------------------------------------------------------------------
# Reading


def test_describe_reports_replicas_revision_images_and_model(kube: KubeStandIn, workloads: Workloads) -> None:
    kube.add_node("gpu-0", gpus=8)
    seed(kube, gpus_per_pod=2)
    kube.set_ready(NS, NAME, 1)

    state = workloads.describe(NS, NAME)

    assert (state.namespace, state.name) == (NS, NAME)
    assert (state.replicas, state.ready_replicas, state.updated_replicas) == (2, 1, 2)
    assert state.revision == 3
    assert state.images == {"vllm": "vllm/vllm-openai:v0.6.3"}
    assert (state.model, state.model_version) == ("llama-3-8b", "v14")
    assert state.model_version_source == "argument --revision"
    assert (state.gpu_resource, state.gpus_per_pod) == ("nvidia.com/gpu", 2)
    assert not state.paused
    assert state.change_cause == "model v14"
    assert state.resource_version == kube.deployment(NS, NAME)["metadata"]["resourceVersion"]
    assert not state.settled  # one pod is crash-looping
    assert (
        state.summary()
        == "llm-prod/vllm-llama: 1/2 ready, revision 3, llama-3-8b v14 (vllm/vllm-openai:v0.6.3)"
    )


def test_model_is_read_from_kserve_and_plain_manifests(kube: KubeStandIn, workloads: Workloads) -> None:
    kube.add_deployment(
        NS,
        "llama-3-8b-predictor",
        image="kserve/huggingfaceserver:v0.14.1",
        model_version="v7",
        flavor="kserve",
    )
    kube.add_deployment(
        NS,
        "resnet",
        image="nvcr.io/nvidia/tritonserver:24.05-py3",
        model="resnet50",
        model_version="3",
        flavor="plain",
    )
    kube.add_deployment(NS, "baked", image="registry.example.com/ml/churn-model:2024-04-30", flavor="plain")
    kube.add_deployment(NS, "engine-only", image="vllm/vllm-openai:v0.6.3", model="qwen2-7b", flavor="vllm")
    kube.add_deployment(
        NS,
        "annotated",
        image="vllm/vllm-openai:v0.6.3",
        model="mistral-7b",
        model_version="main",
        pod_annotations={"serving.kserve.io/model-version": "2024.05.02"},
    )

    kserve = workloads.describe(NS, "llama-3-8b-predictor")
    assert (kserve.model, kserve.model_version) == ("llama-3-8b", "v7")
    assert kserve.model_version_source == "storage URI s3://models/llama-3-8b/v7"
    assert kserve.images == {
        "kserve-container": "kserve/huggingfaceserver:v0.14.1"
    }  # init containers left out
    plain = workloads.describe(NS, "resnet")
    assert (plain.model, plain.model_version) == ("resnet50", "3")
    baked = workloads.describe(NS, "baked")
    assert (baked.model, baked.model_version) == (None, "2024-04-30")
    assert baked.model_version_source == "image tag of container baked"
    engine = workloads.describe(NS, "engine-only")
    assert (engine.model, engine.model_version) == (
        "qwen2-7b",
        None,
    )  # v0.6.3 is vLLM's version, not the model's
    annotated = workloads.describe(NS, "annotated")
    assert annotated.model_version == "2024.05.02"


def test_history_lists_owned_replicasets_by_revision(kube: KubeStandIn, workloads: Workloads) -> None:
    seed(kube)
    seed(
        kube, "vllm-mistral", model="mistral-7b", history=[]
    )  # another deployment's ReplicaSets are not ours

    history = workloads.history(NS, NAME)

    assert [(r.revision, r.model_version, r.current, r.replicas) for r in history] == [
        (1, "v12", False, 0),
        (2, "v13", False, 0),
        (3, "v14", True, 2),
    ]
    assert [r.created_at for r in history] == [
        NOW - timedelta(days=3),
        NOW - timedelta(days=2),
        NOW - timedelta(hours=1),
    ]
    assert [r.change_cause for r in history] == [None, "model v13", "model v14"]
    assert all(r.replicaset.startswith(f"{NAME}-") for r in history)
    changed_before_alert = [
        r for r in history if r.created_at is not None and NOW - timedelta(hours=2) <= r.created_at <= NOW
    ]
    assert [r.model_version for r in changed_before_alert] == ["v14"]


# ---------------------------------------------------------------------------------------------
# Rollback


def test_rollback_to_previous_restores_the_old_template_like_kubectl(
    kube: KubeStandIn, workloads: Workloads
) -> None:
    seed(kube)
    old_rs = kube.replicasets(NS)[1]

    plan = workloads.plan_rollback(NS, NAME)
    assert (plan.from_revision, plan.to_revision) == (3, 2)
    assert plan.describe_change() == "llama-3-8b v14 -> v13"
    assert plan.changes[0] == "model llama-3-8b v14 -> v13"
    assert plan.annotations == {REVISION: "3", "kubernetes.io/change-cause": "model v13"}
    assert writes(kube) == []  # planning changes nothing

    result = workloads.rollback(plan)

    dep = kube.deployment(NS, NAME)
    assert equal_ignore_hash(dep["spec"]["template"], old_rs["spec"]["template"])
    assert "pod-template-hash" not in dep["spec"]["template"]["metadata"]["labels"]
    assert dep["metadata"]["annotations"][REVISION] == "4"
    assert dep["metadata"]["annotations"]["kubernetes.io/change-cause"] == "model v13"
    reused = next(rs for rs in kube.replicasets(NS) if rs["metadata"]["name"] == old_rs["metadata"]["name"])
    assert reused["metadata"]["annotations"][REVISION] == "4"  # the old ReplicaSet gets the next revision
    assert reused["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "2"
    assert reused["spec"]["replicas"] == 2
    assert len(kube.replicasets(NS)) == 3

    [sent] = writes(kube)
    assert (sent.method, sent.path, sent.content_type) == (
        "PATCH",
        f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}",
        "application/json-patch+json",
    )
    assert sent.body == result.request.body
    assert [(op["op"], op["path"]) for op in sent.body] == [
        ("replace", "/metadata/resourceVersion"),
        ("replace", "/spec/template"),
        ("replace", "/metadata/annotations"),
    ]
    assert result.action == "rollback"
    assert not result.dry_run
    assert result.attempts == 1
    assert (result.before.revision, result.before.model_version) == (3, "v14")
    assert (result.after.revision, result.after.model_version, result.after.ready_replicas) == (4, "v13", 2)
    assert result.message == "rolled back llm-prod/vllm-llama to revision 2 (llama-3-8b v14 -> v13)"
    assert result.describe_change() == "llama-3-8b v14 -> v13"


def test_rollback_to_a_named_revision(kube: KubeStandIn, workloads: Workloads) -> None:
    seed(kube)
    result = workloads.rollback(NS, NAME, 1)
    assert (result.after.revision, result.after.model_version) == (4, "v12")
    assert [r.revision for r in workloads.history(NS, NAME)] == [2, 3, 4]


def test_rollback_refusals_use_kubectls_words(kube: KubeStandIn, workloads: Workloads) -> None:
    seed(kube)
    seed(kube, "fresh", model="phi-3", history=[])

    with pytest.raises(AlreadyMatches) as matches:
        workloads.plan_rollback(NS, NAME, 3)
    assert matches.value.message == "skipped rollback (current template already matches revision 3)"
    assert isinstance(matches.value, Conflict)
    assert matches.value.revision == 3
    with pytest.raises(RevisionNotFound) as unknown:
        workloads.rollback(NS, NAME, 9)
    assert unknown.value.message == (
        "unable to find specified revision 9 in history "
        "(deployment llm-prod/vllm-llama has revisions 1, 2, 3)"
    )
    with pytest.raises(RolloutHistoryMissing) as missing:
        workloads.plan_rollback(NS, "fresh")
    assert missing.value.message == 'no rollout history found for deployment "fresh"'
    assert isinstance(missing.value, NotFound)
    kube.set_paused(NS, NAME)
    with pytest.raises(DeploymentPaused) as paused:
        workloads.rollback(NS, NAME)
    assert paused.value.message == (
        "you cannot rollback a paused deployment; resume it first with "
        "'kubectl rollout resume deployment/vllm-llama' and try again"
    )
    assert writes(kube) == []


def test_rollback_of_an_outdated_plan_is_refused(kube: KubeStandIn, workloads: Workloads) -> None:
    seed(kube)
    plan = workloads.plan_rollback(NS, NAME)
    kube.rollout(NS, NAME, model_version="v15")  # someone deploys while the responder reads the plan

    with pytest.raises(PlanOutdated) as outdated:
        workloads.rollback(plan)

    assert (
        "changed since the rollback was planned (revision 3 -> 4, now llama-3-8b v15)"
        in outdated.value.message
    )
    assert writes(kube) == []
    assert workloads.describe(NS, NAME).model_version == "v15"


def test_a_write_between_read_and_patch_is_a_conflict_that_is_retried(
    kube: KubeStandIn, workloads: Workloads
) -> None:
    seed(kube)
    kube.fail_next("PATCH", rf"/deployments/{NAME}$", 409)

    result = workloads.rollback(NS, NAME)

    assert result.attempts == 2
    assert result.after.model_version == "v13"
    assert len(writes(kube)) == 2


def test_a_concurrent_change_is_detected_by_the_resource_version_guard(
    kube: KubeStandIn, workloads: Workloads, kubeconfig: Path
) -> None:
    """The patch carries the resourceVersion it was computed from; a stale one is a 409."""
    seed(kube)
    plan = workloads.plan_rollback(NS, NAME)
    kube.set_ready(NS, NAME, 1)  # the controller writes status: resourceVersion moves on
    assert kube.deployment(NS, NAME)["metadata"]["resourceVersion"] != plan.current.resource_version

    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)
    try:
        with pytest.raises(kubernetes.client.ApiException) as caught:
            kubernetes.client.AppsV1Api(client).patch_namespaced_deployment(NAME, NS, plan.request.body)
    finally:
        client.close()
    assert caught.value.status == 409
    # The adapter re-reads, sees the same templates, and patches with the fresh version.
    assert workloads.rollback(plan).after.model_version == "v13"


# ---------------------------------------------------------------------------------------------
# Scale


def test_scale_up_and_down_through_the_scale_subresource(kube: KubeStandIn, workloads: Workloads) -> None:
    seed(kube)
    up = workloads.scale(NS, NAME, 5)
    assert (up.before.replicas, up.after.replicas, up.after.ready_replicas) == (2, 5, 5)
    assert up.message == "scaled llm-prod/vllm-llama from 2 to 5 replicas"
    [sent] = writes(kube)
    assert (sent.path, sent.content_type, sent.body) == (
        f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}/scale",
        "application/strategic-merge-patch+json",
        {"spec": {"replicas": 5}},
    )
    assert sent.body == up.request.body
    assert sent.path == up.request.path
    down = workloads.scale(NS, NAME, 1)
    assert down.after.replicas == 1
    assert len(kube.pods(NS)) == 1
    assert workloads.describe(NS, NAME).revision == 3  # scaling is not a new revision
    with pytest.raises(PayloadError):
        workloads.scale(NS, NAME, -1)


def test_plan_scale_reports_a_gpu_shortfall(kube: KubeStandIn, workloads: Workloads) -> None:
    kube.add_node("gpu-0", gpus=8)
    kube.add_node("gpu-cordoned", gpus=8, unschedulable=True)
    kube.add_node("gpu-down", gpus=8, ready=False)
    kube.add_pod("research", "finetune-job", node="gpu-0", gpus=2)
    seed(kube, gpus_per_pod=2)  # 2 pods x 2 GPUs on gpu-0: 2 GPUs left there
    kube.add_pod("research", "queued-job", gpus=4, phase="Pending")  # does not fit: stays Pending
    assert kube.pods("research")[1]["status"]["phase"] == "Pending"

    short = workloads.plan_scale(NS, NAME, 4)
    assert short.gpu is not None
    assert (short.gpu.extra_pods, short.gpu.gpus_needed, short.gpu.allocatable) == (2, 4, 8)
    assert (short.gpu.requested, short.gpu.free, short.gpu.pods_that_fit, short.gpu.pending_pods) == (
        6,
        2,
        1,
        1,
    )
    assert short.gpu.fits is False
    assert short.fits is False
    assert short.describe_change() == (
        "replicas 2 -> 4 (2 more pod(s) x 2 nvidia.com/gpu = 4 needed; 2 free of 8 allocatable on "
        "schedulable nodes, room for 1 pod(s); 1 pod(s) already Pending for nvidia.com/gpu: does NOT fit)"
    )
    fits = workloads.plan_scale(NS, NAME, 3)
    assert fits.gpu is not None
    assert fits.gpu.fits is True
    down = workloads.plan_scale(NS, NAME, 1)
    assert down.gpu is None
    assert down.describe_change() == "replicas 2 -> 1 (frees 2 nvidia.com/gpu)"
    assert writes(kube) == []


def test_plan_scale_without_permission_to_see_nodes_says_capacity_is_unknown(
    kube: KubeStandIn, workloads: Workloads
) -> None:
    kube.add_node("gpu-0", gpus=8)
    seed(kube, gpus_per_pod=1)
    kube.fail_next("GET", r"^/api/v1/nodes$", 403)

    plan = workloads.plan_scale(NS, NAME, 3)

    assert plan.gpu is not None
    assert plan.gpu.fits is None
    assert plan.fits is None
    assert plan.gpu.note.startswith(
        'needs 1 nvidia.com/gpu; free capacity unknown: Kubernetes RBAC does not let the bot list "nodes"'
    )


def test_scale_retries_a_conflict_then_gives_up(kube: KubeStandIn, workloads: Workloads) -> None:
    seed(kube)
    kube.fail_next("PATCH", r"/scale$", 409)
    assert workloads.scale(NS, NAME, 3).attempts == 2
    kube.fail_next("PATCH", r"/scale$", 409, times=3)
    with pytest.raises(Conflict) as conflict:
        workloads.scale(NS, NAME, 4)
    assert conflict.value.message.startswith(
        "deployment llm-prod/vllm-llama was changed by someone else while the bot tried to scale it"
    )
    assert kube.deployment(NS, NAME)["spec"]["replicas"] == 3


# ---------------------------------------------------------------------------------------------
# Restart


def test_restart_sets_restarted_at_and_rolls_out(kube: KubeStandIn, kubeconfig: Path) -> None:
    seed(kube)
    clock = datetime(2024, 5, 1, 12, 30, 5, tzinfo=UTC)
    with Workloads(
        kubernetes.config.new_client_from_config(config_file=str(kubeconfig), persist_config=False),
        clock=lambda: clock,
    ) as workloads:
        result = workloads.restart(NS, NAME)

    template = kube.deployment(NS, NAME)["spec"]["template"]
    assert template["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] == "2024-05-01T12:30:05Z"
    [sent] = writes(kube)
    assert sent.content_type == "application/strategic-merge-patch+json"
    assert sent.body == {
        "spec": {
            "template": {
                "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T12:30:05Z"}}
            }
        }
    }
    assert (result.before.revision, result.after.revision) == (3, 4)
    assert result.after.model_version == "v14"
    assert (
        result.message == "restarted llm-prod/vllm-llama: new rollout with restartedAt 2024-05-01T12:30:05Z"
    )


def test_restart_of_a_paused_deployment_is_refused(kube: KubeStandIn, workloads: Workloads) -> None:
    seed(kube, paused=True)
    with pytest.raises(DeploymentPaused) as paused:
        workloads.restart(NS, NAME)
    assert paused.value.message == "can't restart paused deployment (run rollout resume first)"
    assert writes(kube) == []


# ---------------------------------------------------------------------------------------------
# Dry runs


def test_dry_runs_change_nothing_and_show_the_request(kube: KubeStandIn, workloads: Workloads) -> None:
    seed(kube)
    before = kube.deployment(NS, NAME)
    replicasets = kube.replicasets(NS)

    rollback = workloads.rollback(NS, NAME, dry_run=True)
    scale = workloads.scale(NS, NAME, 6, dry_run=True)
    restart = workloads.restart(NS, NAME, dry_run=True)

    assert kube.deployment(NS, NAME) == before
    assert kube.replicasets(NS) == replicasets
    sent = writes(kube)
    assert [r.query for r in sent] == [{"dryRun": "All"}] * 3
    assert [r.body for r in sent] == [rollback.request.body, scale.request.body, restart.request.body]
    assert all(r.dry_run for r in (rollback, scale, restart))
    assert rollback.request.render().startswith(
        "PATCH /apis/apps/v1/namespaces/llm-prod/deployments/vllm-llama\n"
        "Content-Type: application/json-patch+json\n\n["
    )
    assert json.loads(rollback.request.render().split("\n\n", 1)[1]) == rollback.request.body
    assert (rollback.after.model_version, rollback.after.revision) == ("v13", 4)  # predicted revision
    assert rollback.message == (
        "dry run: would roll back llm-prod/vllm-llama from revision 3 to revision 2 (llama-3-8b v14 -> v13); "
        "nothing was changed"
    )
    assert (scale.before.replicas, scale.after.replicas) == (2, 6)
    assert restart.after.revision == 4


# ---------------------------------------------------------------------------------------------
# Errors


def test_api_errors_are_translated_into_the_bots_error_tree(kube: KubeStandIn, workloads: Workloads) -> None:
    seed(kube)
    with pytest.raises(NotFound) as missing:
        workloads.describe(NS, "vllm-nope")
    assert missing.value.message == "deployment llm-prod/vllm-nope not found"
    with pytest.raises(NotFound):
        workloads.scale(NS, "vllm-nope", 3)

    kube.fail_next("PATCH", r"/scale$", 403)
    with pytest.raises(KubernetesForbidden) as forbidden:
        workloads.scale(NS, NAME, 3)
    error = forbidden.value
    assert (error.verb, error.api_group, error.resource, error.namespace) == (
        "patch",
        "apps",
        "deployments/scale",
        NS,
    )
    assert error.message.startswith(
        'Kubernetes RBAC does not let the bot patch "deployments/scale" (API group "apps") '
        'in namespace "llm-prod", '
        "so it cannot scale deployment llm-prod/vllm-llama"
    )
    assert error.code == "E602"

    kube.fail_next("GET", rf"/deployments/{NAME}$", 500)
    with pytest.raises(RetryableUpstreamError) as internal:
        workloads.describe(NS, NAME)
    assert (
        "(500 InternalError): Internal error occurred: etcdserver: request timed out"
        in internal.value.message
    )

    kube.fail_next("GET", rf"/deployments/{NAME}$", 429, retry_after=600)  # answered at once, not slept on
    with pytest.raises(RetryableUpstreamError) as busy:
        workloads.describe(NS, NAME)
    assert busy.value.retry_after == 600.0

    kube.fail_next("PATCH", r"/scale$", 429, retry_after=7)
    with pytest.raises(RetryableUpstreamError) as throttled:
        workloads.scale(NS, NAME, 3)
    assert throttled.value.retry_after == 7.0
    assert kube.deployment(NS, NAME)["spec"]["replicas"] == 2


def test_rejected_credentials_are_a_permanent_error(kube: KubeStandIn, tmp_path: Path) -> None:
    seed(kube)
    kubeconfig = kube.write_kubeconfig(tmp_path / "bad", token="expired")
    with (
        Workloads.from_environment(str(kubeconfig)) as adapter,
        pytest.raises(PermanentUpstreamError) as rejected,
    ):
        adapter.describe(NS, NAME)
    assert rejected.value.message == (
        "the Kubernetes API rejected the bot's credentials (401 Unauthorized) when it tried to read "
        "deployment llm-prod/vllm-llama: check the ServiceAccount token or kubeconfig"
    )
    assert not isinstance(rejected.value, RetryableUpstreamError)


def test_an_unreachable_api_is_a_retryable_error(kube: KubeStandIn, workloads: Workloads) -> None:
    seed(kube)
    kube.outage()
    with pytest.raises(RetryableUpstreamError) as down:
        workloads.describe(NS, NAME)
    assert down.value.message.startswith(
        "cannot reach the Kubernetes API to read deployment llm-prod/vllm-llama"
    )
    kube.restore()
    assert workloads.describe(NS, NAME).replicas == 2


# ---------------------------------------------------------------------------------------------
# Configuration and RBAC


def test_from_environment_reads_kubeconfig_without_touching_the_global_default(
    kube: KubeStandIn, kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(kube)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")  # looks in-cluster, but has no token file
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    default_host = kubernetes.client.Configuration.get_default_copy().host

    settings = Settings()
    assert settings.in_cluster
    with Workloads.from_environment(settings.kubeconfig, in_cluster=settings.in_cluster) as adapter:
        assert adapter.describe(NS, NAME).replicas == 2

    assert kubernetes.client.Configuration.get_default_copy().host == default_host
    with pytest.raises(ConfigError) as missing:
        Workloads.from_environment(str(tmp_path / "absent"))
    assert str(tmp_path / "absent") in missing.value.message


def test_rbac_requirements_cover_exactly_the_requests_each_method_sends(
    kube: KubeStandIn, workloads: Workloads
) -> None:
    kube.add_node("gpu-0", gpus=8)
    seed(kube, gpus_per_pod=1)
    calls = {
        "describe": lambda: workloads.describe(NS, NAME),
        "history": lambda: workloads.history(NS, NAME),
        "plan_rollback": lambda: workloads.plan_rollback(NS, NAME),
        "rollback": lambda: workloads.rollback(NS, NAME),
        "plan_scale": lambda: workloads.plan_scale(NS, NAME, 4),
        "scale": lambda: workloads.scale(NS, NAME, 3),
        "restart": lambda: workloads.restart(NS, NAME),
    }
    dry_runs = {
        "rollback": lambda: workloads.rollback(NS, NAME, dry_run=True),
        "scale": lambda: workloads.scale(NS, NAME, 5, dry_run=True),
        "restart": lambda: workloads.restart(NS, NAME, dry_run=True),
    }
    assert set(calls) == set(RBAC_REQUIREMENTS)
    for method, call in calls.items():
        declared = {(rule.verb, rule.api_group, rule.resource) for rule in RBAC_REQUIREMENTS[method]}
        if method in dry_runs:
            kube.clear_requests()
            dry_runs[method]()
            assert {r.rbac for r in kube.requests} == declared, f"{method} (dry run)"
        kube.clear_requests()
        call()
        assert {r.rbac for r in kube.requests} == declared, method
    cluster_wide = {
        rule.resource for rules in RBAC_REQUIREMENTS.values() for rule in rules if rule.cluster_scope
    }
    assert cluster_wide == {"nodes", "pods"}


def test_rollback_names_model_versions_from_the_annotation_when_the_model_has_no_name(
    kube: KubeStandIn, workloads: Workloads
) -> None:
    kube.add_deployment(
        NS,
        "ranker",
        image="registry.local/ranker-server:1.4",
        flavor="plain",
        pod_annotations={"serving.kserve.io/model-version": "v14"},
        history=[
            {
                "image": "registry.local/ranker-server:1.3",
                "pod_annotations": {"serving.kserve.io/model-version": "v13"},
            }
        ],
    )
    state = workloads.describe(NS, "ranker")
    assert (state.model, state.model_version) == (None, "v14")

    plan = workloads.plan_rollback(NS, "ranker")

    assert plan.describe_change() == "model version v14 -> v13"
    assert plan.changes[0] == "model version v14 -> v13"
    assert rollback_change(plan).headline == "model version v14 -> v13"
    result = workloads.rollback(plan)
    assert result.describe_change() == "model version v14 -> v13"
