"""Every overlay renders with `kubectl kustomize`, the core kinds validate offline against the
Kubernetes schemas (kubernetes-validate, strict), and the pieces refer to each other correctly:
probes, resources, service accounts, HPA/PDB/NetworkPolicy selectors, images, settings."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from services.cli import build_parser
from services.runtime.settings import SERVICE_NAMES
from tests.deploy.conftest import K8S, RenderError, named, of_kind, render, rendered

KUBERNETES_VERSION = "1.30.0"  # the oldest version the manifests must work on
CUSTOM_GROUPS = ("kafka.strimzi.io/", "postgresql.cnpg.io/", "monitoring.coreos.com/")


def core(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if not d["apiVersion"].startswith(CUSTOM_GROUPS)]


def validation_errors(doc: dict[str, Any]) -> list[str]:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{doc['kind']}/{doc['metadata'].get('name')}: {error.message} at "
                f"{'/'.join(str(p) for p in error.path)}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{doc['kind']}/{doc['metadata'].get('name')}: no schema for "
                f"{doc['apiVersion']}"]
    return []


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Label selector semantics (matchLabels and In/NotIn/Exists expressions)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or ():
        value = labels.get(expr["key"])
        op = expr["operator"]
        if (op == "In" and value not in expr["values"]) or \
           (op == "NotIn" and value in expr["values"]) or \
           (op == "Exists" and value is None) or (op == "DoesNotExist" and value is not None):
            return False
    return True


def test_every_overlay_renders_and_its_core_kinds_are_valid(overlay):
    """kubectl kustomize renders the overlay and every core manifest passes strict schema
    validation; every document lands in the overlay's namespace."""
    name, docs = overlay
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ServiceAccount", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "NetworkPolicy", "Job", "ConfigMap", "Namespace"} <= kinds
    errors = [e for d in core(docs) for e in validation_errors(d)]
    assert errors == []
    namespace = of_kind(docs, "Namespace")[0]["metadata"]["name"]
    assert namespace == {"dev": "homecare-dev", "production": "homecare"}[name]
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == \
        {namespace}


def test_the_validation_catches_an_invalid_manifest():
    """A wrong type, an unknown field and a missing required field are each reported (so a
    green run means the manifests were really checked)."""
    deployment = named(rendered("production"), "Deployment", "ledger")
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "three"
    unknown_field = copy.deepcopy(deployment)
    unknown_field["spec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {}
    missing = copy.deepcopy(deployment)
    del missing["spec"]["template"]["spec"]["containers"][0]["name"]
    for broken in (wrong_type, unknown_field, missing):
        assert validation_errors(broken), broken["spec"]


def test_kustomize_errors_fail_the_render(tmp_path: Path):
    """A kustomization naming a file that does not exist is an error, not an empty render."""
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{(K8S / 'base').as_posix()}, missing.yaml]\n")
    with pytest.raises(RenderError):
        render(tmp_path)


def test_each_service_runs_the_one_image_by_name_with_probes_and_resources(overlay):
    """One Deployment per service: same image, `homecare up --services <name>` (the real CLI
    parser accepts the arguments), readiness on /readyz and liveness on /healthz on the served
    port, requests and limits, its own ServiceAccount, non-root with a read-only root fs."""
    _, docs = overlay
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    assert set(deployments) == set(SERVICE_NAMES)
    images = set()
    accounts = {d["metadata"]["name"] for d in of_kind(docs, "ServiceAccount")}
    for name, deployment in deployments.items():
        spec = deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        images.add(container["image"])
        args = build_parser().parse_args(container["args"])
        assert args.command == "up" and args.services == name and args.no_demo_data
        assert not args.distributed
        port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
        assert args.port == port and args.host == "0.0.0.0"
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert set(container["resources"]["requests"]) == {"cpu", "memory"}
        assert set(container["resources"]["limits"]) >= {"cpu", "memory"}
        assert spec["serviceAccountName"] == name and name in accounts
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        env = {e["name"]: e for e in container["env"]}
        assert env[f"{name.upper()}_POSTGRES_DBNAME"]["value"] == name
        # the Service routes to these pods' http port
        service = named(docs, "Service", name)
        assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(deployment))
        assert service["spec"]["ports"][0]["targetPort"] == "http"
    jobs = of_kind(docs, "Job")
    assert {c["image"] for j in jobs for c in j["spec"]["template"]["spec"]["containers"]} \
        == images and len(images) == 1


def test_autoscaling_disruption_budgets_and_replicas(overlay):
    """HPAs target existing Deployments and scale on CPU and on the group's consumer lag, never
    past the partitions of the topics the service consumes; PDBs select the pods and let one
    go; dev runs single replicas, production at least three."""
    name, docs = overlay
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    partitions = {t["spec"]["topicName"]: t["spec"]["partitions"]
                  for t in of_kind(docs, "KafkaTopic")}
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments
        service = target["name"]
        metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
        assert metrics["Resource"]["resource"]["name"] == "cpu"
        lag = metrics["External"]["external"]["metric"]
        assert lag["name"] == "homecare_consumer_lag"
        assert lag["selector"]["matchLabels"] == {"group": f"homecare-{service}"}
        assert hpa["spec"]["maxReplicas"] <= min(partitions[t] for t in consumed(service))
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert {h["spec"]["scaleTargetRef"]["name"]
            for h in of_kind(docs, "HorizontalPodAutoscaler")} == set(deployments)
    least = {h["spec"]["scaleTargetRef"]["name"]: h["spec"]["minReplicas"]
             for h in of_kind(docs, "HorizontalPodAutoscaler")}
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        matching = [n for n, d in deployments.items()
                    if selects(pdb["spec"]["selector"], pod_labels(d))]
        assert len(matching) == 1
        if "minAvailable" in pdb["spec"]:  # a node can always be drained
            assert pdb["spec"]["minAvailable"] < least[matching[0]]
    # the HPA owns the replica count; the Deployments leave it to it
    assert all("replicas" not in d["spec"] for d in deployments.values())
    assert set(least.values()) == ({1} if name == "dev" else {3})
    if name == "dev":
        assert {h["spec"]["maxReplicas"] for h in of_kind(docs, "HorizontalPodAutoscaler")} \
            == {1}


def consumed(service: str) -> list[str]:
    from services.runtime.messaging import _service_classes

    for name, app_cls, _ in _service_classes():
        if name == service:
            return sorted(app_cls.subscriptions)
    raise AssertionError(service)


def test_network_policies_select_existing_pods_and_allow_only_what_is_needed(overlay):
    """Ingress is denied by default; services take HTTP on their port only and reach only
    Kafka, PostgreSQL and DNS; every policy selects pods that exist."""
    _, docs = overlay
    policies = {p["metadata"]["name"]: p for p in of_kind(docs, "NetworkPolicy")}
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    services = policies["homecare-services"]["spec"]
    pods = [pod_labels(d) for d in of_kind(docs, "Deployment")]
    assert all(selects(services["podSelector"], labels) for labels in pods)
    assert [p["port"] for rule in services["ingress"] for p in rule["ports"]] == [8080]
    egress_ports = sorted(p["port"] for rule in services["egress"] for p in rule["ports"])
    assert egress_ports == [53, 53, 5432, 9092]
    jobs = [j["spec"]["template"]["metadata"]["labels"] for j in of_kind(docs, "Job")]
    assert all(selects(policies["homecare-setup-jobs"]["spec"]["podSelector"], labels)
               for labels in jobs)
    # the database admits the services and Jobs (part-of label on their pods)
    pg_clients = policies["homecare-pg"]["spec"]["ingress"][0]["from"][0]["podSelector"]
    assert all(selects(pg_clients, labels) for labels in pods + jobs)


def test_settings_point_at_the_operators_services_and_secrets(overlay):
    """The ConfigMap names Strimzi's bootstrap Service and CloudNativePG's read-write Service;
    the credentials come from CloudNativePG's generated app Secret, and the event-store key
    (encryption at rest) from the Secret homecare-cipher, which every service reads."""
    _, docs = overlay
    config = named(docs, "ConfigMap", "homecare-config")["data"]
    kafka = of_kind(docs, "Kafka")[0]["metadata"]["name"]
    cluster = of_kind(docs, "Cluster")[0]["metadata"]["name"]
    plain = [listener for listener in of_kind(docs, "Kafka")[0]["spec"]["kafka"]["listeners"]
             if not listener["tls"]][0]
    assert config["KAFKA_BOOTSTRAP_SERVERS"] == f"{kafka}-kafka-bootstrap:{plain['port']}"
    assert config["HOMECARE_POSTGRES_HOST"] == f"{cluster}-rw"
    assert config["HOMECARE_STORE"] == "postgres"
    from services.runtime.settings import SharedSettings

    settings = SharedSettings.model_validate(
        {k.removeprefix("HOMECARE_").lower(): v for k, v in config.items()
         if k.startswith("HOMECARE_")})
    assert settings.store == "postgres" and settings.postgres_port == 5432
    for deployment in of_kind(docs, "Deployment") + of_kind(docs, "Job"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] == "homecare-cipher":
                    assert (env["name"], ref["key"]) in {("HOMECARE_CIPHER_KEY", "key"),
                                                         ("HOMECARE_CIPHER_OLD_KEYS", "old-keys")}
                    assert ref.get("optional", False) is (ref["key"] == "old-keys")
                elif ref:
                    assert ref["name"] == f"{cluster}-app"
                    assert ref["key"] in {"username", "password"}
    for deployment in of_kind(docs, "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        names = {e["name"] for e in container.get("env", [])}
        assert {"HOMECARE_CIPHER_KEY", "HOMECARE_CIPHER_OLD_KEYS"} <= names, deployment


def test_homecare_pods_meet_the_restricted_pod_security_standard(overlay):
    """The production namespace enforces `restricted`: every pod of ours (services and Jobs)
    runs as non-root with the runtime's seccomp profile, no privilege escalation and no
    capabilities, and mounts no service-account token."""
    _, docs = overlay
    workloads = of_kind(docs, "Deployment") + of_kind(docs, "Job")
    assert len(workloads) == 5
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
    namespace = of_kind(rendered("production"), "Namespace")[0]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
