"""The Kubernetes stand-in, driven by the official `kubernetes` client over real HTTP.

What matters is that the stand-in answers like an API server would, so that tests of the
bot's adapter against it mean something: object shapes, Status wording, PATCH semantics per
content type, optimistic concurrency, dry runs, the scale subresource, and the deployment
controller's revision rules.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from bot.sandbox.kube_api import KubeStandIn
from bot.sandbox.kube_patch import (
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)

NS = "llm-prod"
REVISION = "deployment.kubernetes.io/revision"


@pytest.fixture
def kube() -> Iterator[KubeStandIn]:
    with KubeStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def api(kube: KubeStandIn, tmp_path: Path) -> Iterator[kubernetes.client.ApiClient]:
    client = kubernetes.config.new_client_from_config(
        config_file=str(kube.write_kubeconfig(tmp_path / "kubeconfig")), persist_config=False
    )
    yield client
    client.close()


@pytest.fixture
def apps(api: kubernetes.client.ApiClient) -> kubernetes.client.AppsV1Api:
    return kubernetes.client.AppsV1Api(api)


@pytest.fixture
def core(api: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api)


def raw(method: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call a client method and return the JSON the server sent, not the client's model."""
    response = method(*args, _preload_content=False, **kwargs)
    data: dict[str, Any] = json.loads(response.data)
    return data


def status_of(error: ApiException) -> dict[str, Any]:
    assert error.body
    body: dict[str, Any] = json.loads(error.body)
    return body


def seed(kube: KubeStandIn, name: str = "vllm-llama", **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "image": "vllm/vllm-openai:v0.6.3",
        "model": "llama-3-8b",
        "model_version": "v14",
        "replicas": 2,
        "history": [{"model_version": "v12"}, {"model_version": "v13", "change_cause": "model v13"}],
    }
    options.update(kwargs)
    return kube.add_deployment(NS, name, **options)


def template_of(dep: dict[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = dep["spec"]["template"]
    return template


def http(kube: KubeStandIn, method: str, path: str, *, token: str = "sandbox") -> tuple[int, dict[str, Any]]:  # noqa: S107
    request = urllib.request.Request(
        kube.url + path, method=method, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# ---------------------------------------------------------------------------------------------
# Connection, auth, shapes


def test_kubeconfig_is_loaded_by_the_official_client_and_the_token_is_checked(
    kube: KubeStandIn, tmp_path: Path
) -> None:
    seed(kube)
    good = kubernetes.config.new_client_from_config(
        config_file=str(kube.write_kubeconfig(tmp_path / "good")), persist_config=False
    )
    bad = kubernetes.config.new_client_from_config(
        config_file=str(kube.write_kubeconfig(tmp_path / "bad", token="wrong")), persist_config=False
    )
    try:
        deployments = kubernetes.client.AppsV1Api(good).list_namespaced_deployment(NS).items
        names = [d.metadata.name for d in deployments if d.metadata is not None]
        assert names == ["vllm-llama"]
        with pytest.raises(ApiException) as caught:
            kubernetes.client.AppsV1Api(bad).list_namespaced_deployment(NS)
        assert caught.value.status == 401
        assert status_of(caught.value) == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }
    finally:
        good.close()
        bad.close()
    assert not any("sandbox" in json.dumps(r.query) for r in kube.requests)


def test_a_deployment_has_the_api_servers_shape(kube: KubeStandIn, apps: kubernetes.client.AppsV1Api) -> None:
    seed(kube, gpus_per_pod=1)
    kube.add_node("gpu-0", gpus=8)
    dep = raw(apps.read_namespaced_deployment, "vllm-llama", NS)

    assert (dep["kind"], dep["apiVersion"]) == ("Deployment", "apps/v1")
    meta = dep["metadata"]
    assert set(meta) >= {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp"}
    assert meta["annotations"][REVISION] == "3"
    assert meta["generation"] == 3  # created, then two template changes
    spec = dep["spec"]
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert (spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (10, 600)
    pod_spec = spec["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Always"
    assert pod_spec["containers"][0]["terminationMessagePolicy"] == "File"
    assert pod_spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    status = dep["status"]
    assert status["observedGeneration"] == 3
    assert (
        status["replicas"],
        status["readyReplicas"],
        status["updatedReplicas"],
        status["availableReplicas"],
    ) == (
        2,
        2,
        2,
        2,
    )
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "NewReplicaSetAvailable"

    listing = raw(apps.list_namespaced_deployment, NS, label_selector="model=llama-3-8b")
    assert (listing["kind"], listing["apiVersion"]) == ("DeploymentList", "apps/v1")
    assert "kind" not in listing["items"][0]  # list items carry no kind, as on a real server
    assert raw(apps.list_namespaced_deployment, NS, label_selector="model=other")["items"] == []
    assert len(raw(apps.list_deployment_for_all_namespaces)["items"]) == 1


def test_missing_objects_unknown_paths_and_wrong_methods_answer_with_status_objects(
    kube: KubeStandIn, apps: kubernetes.client.AppsV1Api
) -> None:
    with pytest.raises(ApiException) as caught:
        apps.read_namespaced_deployment("nope", NS)
    assert caught.value.status == 404
    assert status_of(caught.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments.apps "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "group": "apps", "kind": "deployments"},
        "code": 404,
    }
    code, body = http(kube, "GET", "/apis/apps/v1/namespaces/x/statefulsets")
    assert (code, body["reason"], body["message"]) == (
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
    code, body = http(kube, "DELETE", "/apis/apps/v1/namespaces/x/replicasets/y")
    assert (code, body["reason"]) == (405, "MethodNotAllowed")
    code, body = http(kube, "GET", "/apis/apps/v1/namespaces/x/deployments", token="stolen")
    assert code == 401


# ---------------------------------------------------------------------------------------------
# PATCH flavours, concurrency, dry run


def test_json_patch_replacing_the_template_rolls_out_a_new_replicaset(
    kube: KubeStandIn, apps: kubernetes.client.AppsV1Api
) -> None:
    seed(kube)
    before = kube.deployment(NS, "vllm-llama")
    template = template_of(before)
    template["spec"]["containers"][0]["image"] = "vllm/vllm-openai:v0.6.4"
    answer = raw(
        apps.patch_namespaced_deployment,
        "vllm-llama",
        NS,
        [
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "add", "path": "/metadata/annotations/team", "value": "llm"},
        ],
    )
    sent = kube.requests_to("PATCH")[-1]
    assert sent.content_type == "application/json-patch+json"
    # The answer is the object as written; the controller's revision comes with a later read.
    assert answer["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert answer["metadata"]["annotations"][REVISION] == "3"
    after = kube.deployment(NS, "vllm-llama")
    assert after["metadata"]["annotations"][REVISION] == "4"
    assert after["metadata"]["annotations"]["team"] == "llm"
    assert int(after["metadata"]["resourceVersion"]) > int(answer["metadata"]["resourceVersion"])
    replicasets = kube.replicasets(NS)
    assert [rs["metadata"]["annotations"][REVISION] for rs in replicasets] == ["1", "2", "3", "4"]
    newest = replicasets[-1]
    assert newest["spec"]["replicas"] == 2
    assert all(rs["spec"]["replicas"] == 0 for rs in replicasets[:-1])
    assert newest["metadata"]["annotations"]["team"] == "llm"  # deployment annotations are copied


def test_a_failed_json_patch_test_op_is_the_api_servers_uninformative_422(
    kube: KubeStandIn, apps: kubernetes.client.AppsV1Api
) -> None:
    seed(kube)
    before = kube.deployment(NS, "vllm-llama")
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment(
            "vllm-llama",
            NS,
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
                {"op": "replace", "path": "/spec/replicas", "value": 5},
            ],
        )
    assert caught.value.status == 422
    assert (
        status_of(caught.value)["message"] == "the server rejected our request due to an error in our request"
    )
    assert kube.deployment(NS, "vllm-llama") == before


def test_a_stale_resource_version_is_a_conflict_for_put_and_patch(
    kube: KubeStandIn, apps: kubernetes.client.AppsV1Api
) -> None:
    seed(kube)
    stale = kube.deployment(NS, "vllm-llama")
    kube.rollout(NS, "vllm-llama", model_version="v15")
    stale["spec"]["replicas"] = 7
    expected = (
        'Operation cannot be fulfilled on deployments.apps "vllm-llama": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    with pytest.raises(ApiException) as put:
        raw(apps.replace_namespaced_deployment, "vllm-llama", NS, stale)
    assert (put.value.status, status_of(put.value)["reason"], status_of(put.value)["message"]) == (
        409,
        "Conflict",
        expected,
    )
    with pytest.raises(ApiException) as patch:
        apps.patch_namespaced_deployment(
            "vllm-llama",
            NS,
            [
                {
                    "op": "replace",
                    "path": "/metadata/resourceVersion",
                    "value": stale["metadata"]["resourceVersion"],
                }
            ],
        )
    assert patch.value.status == 409
    assert kube.deployment(NS, "vllm-llama")["spec"]["replicas"] == 2

    fresh = kube.deployment(NS, "vllm-llama")
    fresh["spec"]["replicas"] = 3
    raw(apps.replace_namespaced_deployment, "vllm-llama", NS, fresh)
    assert kube.deployment(NS, "vllm-llama")["spec"]["replicas"] == 3


def test_merge_patch_deletes_with_null_and_bumps_generation_for_annotations(
    kube: KubeStandIn, apps: kubernetes.client.AppsV1Api
) -> None:
    seed(kube, annotations={"owner": "ml-platform", "ticket": "OPS-1"})
    before = kube.deployment(NS, "vllm-llama")
    raw(
        apps.patch_namespaced_deployment,
        "vllm-llama",
        NS,
        {"metadata": {"annotations": {"ticket": None, "owner": "llm-team"}}},
        _content_type="application/merge-patch+json",
    )
    assert kube.requests_to("PATCH")[-1].content_type == "application/merge-patch+json"
    after = kube.deployment(NS, "vllm-llama")
    assert after["metadata"]["annotations"]["owner"] == "llm-team"
    assert "ticket" not in after["metadata"]["annotations"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert len(kube.replicasets(NS)) == 3  # no template change, no new revision


def test_strategic_merge_patch_merges_containers_by_name(
    kube: KubeStandIn, apps: kubernetes.client.AppsV1Api
) -> None:
    seed(kube)
    raw(
        apps.patch_namespaced_deployment,
        "vllm-llama",
        NS,
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.6.4"}]}}
            }
        },
    )
    assert kube.requests_to("PATCH")[-1].content_type == "application/strategic-merge-patch+json"
    container = template_of(kube.deployment(NS, "vllm-llama"))["spec"]["containers"][0]
    assert container["image"] == "vllm/vllm-openai:v0.6.4"
    assert container["command"] == ["vllm"]
    assert "--revision" in container["args"]
    assert kube.deployment(NS, "vllm-llama")["metadata"]["annotations"][REVISION] == "4"


def test_dry_run_answers_the_result_and_stores_nothing(
    kube: KubeStandIn, apps: kubernetes.client.AppsV1Api
) -> None:
    seed(kube)
    before = kube.deployment(NS, "vllm-llama")
    answer = raw(
        apps.patch_namespaced_deployment,
        "vllm-llama",
        NS,
        {"spec": {"replicas": 6, "template": {"metadata": {"annotations": {"x": "y"}}}}},
        dry_run="All",
    )
    assert answer["spec"]["replicas"] == 6
    assert answer["spec"]["template"]["metadata"]["annotations"]["x"] == "y"
    assert answer["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert kube.deployment(NS, "vllm-llama") == before
    assert len(kube.replicasets(NS)) == 3
    assert kube.requests_to("PATCH")[-1].query == {"dryRun": "All"}
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment("vllm-llama", NS, {"spec": {"replicas": 6}}, dry_run="Some")
    assert caught.value.status == 400


def test_validation_errors_are_422_invalid(kube: KubeStandIn, apps: kubernetes.client.AppsV1Api) -> None:
    seed(kube)
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment("vllm-llama", NS, {"spec": {"replicas": -1}})
    status = status_of(caught.value)
    assert (caught.value.status, status["reason"]) == (422, "Invalid")
    assert status["message"] == (
        'Deployment.apps "vllm-llama" is invalid: spec.replicas: '
        "Invalid value: -1: must be greater than or equal to 0"
    )
    with pytest.raises(ApiException) as selector:
        apps.patch_namespaced_deployment(
            "vllm-llama", NS, {"spec": {"selector": {"matchLabels": {"a": "b"}}}}
        )
    assert "field is immutable" in status_of(selector.value)["message"]


# ---------------------------------------------------------------------------------------------
# Scale subresource


def test_scale_subresource_reads_patches_and_guards_updates(
    kube: KubeStandIn, apps: kubernetes.client.AppsV1Api
) -> None:
    seed(kube)
    scale = raw(apps.read_namespaced_deployment_scale, "vllm-llama", NS)
    assert (scale["kind"], scale["apiVersion"]) == ("Scale", "autoscaling/v1")
    assert scale["spec"] == {"replicas": 2}
    assert scale["status"] == {"replicas": 2, "selector": "helm-release-name=vllm,model=llama-3-8b"}
    assert (
        scale["metadata"]["resourceVersion"]
        == kube.deployment(NS, "vllm-llama")["metadata"]["resourceVersion"]
    )

    answer = raw(apps.patch_namespaced_deployment_scale, "vllm-llama", NS, {"spec": {"replicas": 4}})
    assert answer["spec"]["replicas"] == 4
    dep = kube.deployment(NS, "vllm-llama")
    assert dep["spec"]["replicas"] == 4
    assert dep["status"]["readyReplicas"] == 4
    assert (
        max(kube.replicasets(NS), key=lambda rs: int(rs["metadata"]["annotations"][REVISION]))["spec"][
            "replicas"
        ]
        == 4
    )
    assert len(kube.replicasets(NS)) == 3  # scaling makes no new revision

    stale = dict(scale, spec={"replicas": 1})
    with pytest.raises(ApiException) as caught:
        raw(apps.replace_namespaced_deployment_scale, "vllm-llama", NS, stale)
    assert caught.value.status == 409
    current = raw(apps.read_namespaced_deployment_scale, "vllm-llama", NS)
    current["spec"]["replicas"] = 1
    assert raw(apps.replace_namespaced_deployment_scale, "vllm-llama", NS, current)["spec"]["replicas"] == 1
    with pytest.raises(ApiException) as negative:
        apps.patch_namespaced_deployment_scale("vllm-llama", NS, {"spec": {"replicas": -3}})
    assert negative.value.status == 422


# ---------------------------------------------------------------------------------------------
# The deployment controller


def test_going_back_to_an_old_template_reuses_its_replicaset_with_the_next_revision(
    kube: KubeStandIn, apps: kubernetes.client.AppsV1Api
) -> None:
    seed(kube)
    old = kube.replicasets(NS)[1]  # revision 2, model v13
    assert old["metadata"]["annotations"]["kubernetes.io/change-cause"] == "model v13"
    template = old["spec"]["template"]
    hash_label = template["metadata"]["labels"].pop("pod-template-hash")
    assert old["metadata"]["name"] == f"vllm-llama-{hash_label}"
    raw(
        apps.patch_namespaced_deployment,
        "vllm-llama",
        NS,
        [{"op": "replace", "path": "/spec/template", "value": template}],
    )

    replicasets = {rs["metadata"]["name"]: rs for rs in kube.replicasets(NS)}
    assert len(replicasets) == 3  # reused, not created
    reused = replicasets[old["metadata"]["name"]]
    assert reused["metadata"]["annotations"][REVISION] == "4"
    assert reused["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "2"
    assert reused["metadata"]["creationTimestamp"] == old["metadata"]["creationTimestamp"]
    assert reused["spec"]["replicas"] == 2
    assert kube.deployment(NS, "vllm-llama")["metadata"]["annotations"][REVISION] == "4"
    owner = reused["metadata"]["ownerReferences"][0]
    assert owner["controller"] is True
    assert owner["uid"] == kube.deployment(NS, "vllm-llama")["metadata"]["uid"]
    pods = kube.pods(NS)
    assert len(pods) == 2
    assert all(p["metadata"]["labels"]["pod-template-hash"] == hash_label for p in pods)


def test_history_timestamps_follow_the_seeded_rollouts(kube: KubeStandIn) -> None:
    deployed = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    seed(
        kube,
        created_at=deployed,
        history=[{"model_version": "v13", "created_at": deployed - timedelta(days=7)}],
    )
    stamps = [rs["metadata"]["creationTimestamp"] for rs in kube.replicasets(NS)]
    assert stamps == ["2024-04-24T12:00:00Z", "2024-05-01T12:00:00Z"]


def test_revision_history_limit_cleans_up_old_replicasets(
    kube: KubeStandIn, apps: kubernetes.client.AppsV1Api
) -> None:
    seed(kube)
    raw(apps.patch_namespaced_deployment, "vllm-llama", NS, {"spec": {"revisionHistoryLimit": 1}})
    assert [rs["metadata"]["annotations"][REVISION] for rs in kube.replicasets(NS)] == ["2", "3"]


def test_paused_deployment_keeps_its_replicaset_when_the_template_changes(
    kube: KubeStandIn, apps: kubernetes.client.AppsV1Api
) -> None:
    seed(kube, paused=True)
    raw(
        apps.patch_namespaced_deployment,
        "vllm-llama",
        NS,
        {"spec": {"template": {"metadata": {"annotations": {"x": "1"}}}}},
    )
    dep = kube.deployment(NS, "vllm-llama")
    assert len(kube.replicasets(NS)) == 3
    assert dep["metadata"]["annotations"][REVISION] == "3"
    assert any(c["reason"] == "DeploymentPaused" for c in dep["status"]["conditions"])


# ---------------------------------------------------------------------------------------------
# Nodes, pods, selectors


def test_gpu_pods_are_scheduled_by_allocatable_gpus(
    kube: KubeStandIn, core: kubernetes.client.CoreV1Api
) -> None:
    kube.add_node("gpu-0", gpus=4)
    kube.add_node("cpu-0")
    seed(kube, gpus_per_pod=2, replicas=3)
    nodes = raw(core.list_node)
    assert nodes["kind"] == "NodeList"
    assert {
        n["metadata"]["name"]: n["status"]["allocatable"].get("nvidia.com/gpu") for n in nodes["items"]
    } == {
        "cpu-0": None,
        "gpu-0": "4",
    }
    live = raw(
        core.list_pod_for_all_namespaces, field_selector="status.phase!=Succeeded,status.phase!=Failed"
    )
    phases = sorted(p["status"]["phase"] for p in live["items"])
    assert phases == ["Pending", "Running", "Running"]
    pending = next(p for p in live["items"] if p["status"]["phase"] == "Pending")
    assert (
        pending["status"]["conditions"][0]["message"]
        == "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    )
    running = next(p for p in live["items"] if p["status"]["phase"] == "Running")
    assert running["spec"]["nodeName"] == "gpu-0"
    assert len(raw(core.list_namespaced_pod, NS, label_selector="model=llama-3-8b")["items"]) == 3
    assert raw(core.list_namespaced_pod, "other")["items"] == []
    assert (
        running["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == "2"
    )  # defaulted from limits
    assert kube.deployment(NS, "vllm-llama")["status"]["readyReplicas"] == 2

    kube.add_node("gpu-1", gpus=4)
    assert kube.deployment(NS, "vllm-llama")["status"]["readyReplicas"] == 3
    with pytest.raises(ApiException) as caught:
        core.list_pod_for_all_namespaces(field_selector="spec.foo=bar")
    assert caught.value.status == 400
    assert "field label not supported: spec.foo" in status_of(caught.value)["message"]


def test_label_selectors_support_set_based_requirements(
    kube: KubeStandIn, apps: kubernetes.client.AppsV1Api
) -> None:
    seed(kube)
    seed(kube, "vllm-mistral", model="mistral-7b", history=[])

    def names(selector: str) -> list[str]:
        return [
            i["metadata"]["name"]
            for i in raw(apps.list_namespaced_replica_set, NS, label_selector=selector)["items"]
        ]

    assert len(names("model in (llama-3-8b,mistral-7b)")) == 4
    assert len(names("model=llama-3-8b,helm-release-name=vllm")) == 3
    assert len(names("model!=llama-3-8b")) == 1
    assert names("!model") == []
    assert len(names("pod-template-hash")) == 4
    newest = kube.replicasets(NS)[-1]["metadata"]["name"]
    single = raw(apps.read_namespaced_replica_set, newest, NS)
    assert (single["kind"], single["metadata"]["name"]) == ("ReplicaSet", newest)


def test_lists_are_chunked_with_limit_and_continue(
    kube: KubeStandIn, apps: kubernetes.client.AppsV1Api
) -> None:
    seed(kube)
    first = raw(apps.list_namespaced_replica_set, NS, limit=2)
    assert len(first["items"]) == 2
    assert first["metadata"]["remainingItemCount"] == 1
    second = raw(apps.list_namespaced_replica_set, NS, limit=2, _continue=first["metadata"]["continue"])
    assert len(second["items"]) == 1
    assert "continue" not in second["metadata"]


def test_kserve_and_plain_flavors_carry_their_charts_metadata(kube: KubeStandIn) -> None:
    kserve = kube.add_deployment(
        NS,
        "llama-3-8b-predictor",
        image="kserve/huggingfaceserver:v0.14.1",
        model_version="v7",
        flavor="kserve",
    )
    labels = template_of(kserve)["metadata"]["labels"]
    assert labels["serving.kserve.io/inferenceservice"] == "llama-3-8b"
    assert labels["app"] == "isvc.llama-3-8b-predictor"
    annotations = template_of(kserve)["metadata"]["annotations"]
    assert (
        annotations["internal.serving.kserve.io/storage-initializer-sourceuri"] == "s3://models/llama-3-8b/v7"
    )
    assert template_of(kserve)["spec"]["initContainers"][0]["name"] == "storage-initializer"
    plain = kube.add_deployment(
        NS,
        "resnet",
        image="nvcr.io/nvidia/tritonserver:24.05-py3",
        model="resnet50",
        model_version="3",
        flavor="plain",
    )
    assert template_of(plain)["metadata"]["labels"]["app.kubernetes.io/version"] == "3"
    assert {"name": "MODEL_VERSION", "value": "3"} in template_of(plain)["spec"]["containers"][0]["env"]


# ---------------------------------------------------------------------------------------------
# Recording and failure injection


def test_requests_are_recorded_without_credentials_and_with_their_rbac_triple(
    kube: KubeStandIn, apps: kubernetes.client.AppsV1Api
) -> None:
    seed(kube)
    apps.patch_namespaced_deployment_scale("vllm-llama", NS, {"spec": {"replicas": 3}}, dry_run="All")
    [sent] = kube.requests_to("PATCH", r"/deployments/vllm-llama/scale$")
    assert sent.path == f"/apis/apps/v1/namespaces/{NS}/deployments/vllm-llama/scale"
    assert sent.query == {"dryRun": "All"}
    assert sent.content_type == "application/strategic-merge-patch+json"
    assert sent.body == {"spec": {"replicas": 3}}
    assert sent.rbac == ("patch", "apps", "deployments/scale")
    assert sent.status == 200
    assert sent.authorized
    assert "sandbox" not in repr(sent)


def test_injected_failures_are_worded_like_the_api_server(
    kube: KubeStandIn, apps: kubernetes.client.AppsV1Api, core: kubernetes.client.CoreV1Api
) -> None:
    seed(kube)
    kube.fail_next("PATCH", r"/scale$", 403)
    with pytest.raises(ApiException) as forbidden:
        apps.patch_namespaced_deployment_scale("vllm-llama", NS, {"spec": {"replicas": 3}})
    assert status_of(forbidden.value)["message"] == (
        'deployments.apps "vllm-llama" is forbidden: User "system:serviceaccount:incident-bot:incident-bot" '
        'cannot patch resource "deployments/scale" in API group "apps" in the namespace "llm-prod"'
    )
    kube.fail_next("GET", r"^/api/v1/nodes$", 403)
    with pytest.raises(ApiException) as nodes:
        core.list_node()
    assert status_of(nodes.value)["message"].endswith(
        'cannot list resource "nodes" in API group "" at the cluster scope'
    )
    kube.fail_next("GET", r"/deployments/vllm-llama$", 500, times=2)
    for _ in range(2):
        with pytest.raises(ApiException) as internal:
            apps.read_namespaced_deployment("vllm-llama", NS)
        assert (internal.value.status, status_of(internal.value)["reason"]) == (500, "InternalError")
    assert raw(apps.read_namespaced_deployment, "vllm-llama", NS)["metadata"]["name"] == "vllm-llama"
    # (a GET would be retried inside urllib3, which honours Retry-After on 429 for idempotent calls)
    kube.fail_next("*", r"/deployments", 429, retry_after=3)
    with pytest.raises(ApiException) as throttled:
        apps.patch_namespaced_deployment_scale("vllm-llama", NS, {"spec": {"replicas": 3}})
    assert throttled.value.status == 429
    assert throttled.value.headers is not None
    assert throttled.value.headers["Retry-After"] == "3"
    assert status_of(throttled.value)["details"] == {"retryAfterSeconds": 3}


def test_an_outage_drops_connections_until_restored(
    kube: KubeStandIn, apps: kubernetes.client.AppsV1Api
) -> None:
    seed(kube)
    kube.outage()
    with pytest.raises(urllib3.exceptions.HTTPError):
        apps.read_namespaced_deployment("vllm-llama", NS, _request_timeout=10)
    kube.outage(status=503)
    with pytest.raises(ApiException) as unavailable:
        apps.read_namespaced_deployment("vllm-llama", NS)
    assert unavailable.value.status == 503
    kube.restore()
    assert raw(apps.read_namespaced_deployment, "vllm-llama", NS)["metadata"]["name"] == "vllm-llama"


# ---------------------------------------------------------------------------------------------
# The patch algorithms on their own


def test_json_patch_follows_rfc_6902() -> None:
    doc = {"a": {"b~c": 1, "d/e": [1, 2]}, "list": [1, 2, 3]}
    patched = apply_json_patch(
        doc,
        [
            {"op": "add", "path": "/list/-", "value": 4},
            {"op": "remove", "path": "/list/0"},
            {"op": "replace", "path": "/a/b~0c", "value": 2},
            {"op": "copy", "from": "/a/d~1e", "path": "/copied"},
            {"op": "move", "from": "/copied", "path": "/moved"},
            {"op": "test", "path": "/moved", "value": [1, 2]},
        ],
    )
    assert patched == {"a": {"b~c": 2, "d/e": [1, 2]}, "list": [2, 3, 4], "moved": [1, 2]}
    assert doc["list"] == [1, 2, 3]  # the input is not modified
    with pytest.raises(PatchError):
        apply_json_patch(doc, [{"op": "replace", "path": "/missing", "value": 1}])
    with pytest.raises(PatchError):
        apply_json_patch(doc, [{"op": "test", "path": "/list/0", "value": 9}])


def test_merge_and_strategic_merge_patches() -> None:
    doc = {
        "spec": {"containers": [{"name": "a", "image": "a:1", "args": ["x"]}, {"name": "b", "image": "b:1"}]}
    }
    assert apply_merge_patch(doc, {"spec": {"containers": [{"name": "a"}]}}) == {
        "spec": {"containers": [{"name": "a"}]}
    }
    merged = apply_strategic_merge_patch(
        doc,
        {
            "spec": {
                "containers": [
                    {"name": "a", "image": "a:2"},
                    {"name": "b", "$patch": "delete"},
                    {"name": "c", "image": "c:1"},
                ]
            }
        },
    )
    assert merged == {
        "spec": {"containers": [{"name": "a", "image": "a:2", "args": ["x"]}, {"name": "c", "image": "c:1"}]}
    }
    replaced = apply_strategic_merge_patch(doc, {"spec": {"$patch": "replace", "containers": []}})
    assert replaced == {"spec": {"containers": []}}
