"""The Strimzi and CloudNativePG resources, checked against the fields those operators expect
(kubernetes-validate has no schemas for custom resources): KRaft with node pools, topics that
match the code's topics, replication 3 / min.insync.replicas 2 in production, one database
per service."""

from __future__ import annotations

import re
from typing import Any

from contracts.topics import ALL_TOPICS, DEFAULT_PARTITIONS, DLQ_TOPICS
from services.runtime.settings import SERVICE_NAMES
from tests.deploy.conftest import of_kind, rendered

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
QUANTITY = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti)?$")


def kafka_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (kafka,) = of_kind(docs, "Kafka")
    return kafka


def test_kafka_runs_in_kraft_mode_on_node_pools(overlay):
    """Kafka: kafka.strimzi.io/v1beta2, node pools and KRaft enabled, no ZooKeeper; the pools
    belong to this cluster and give it controllers and brokers with persistent storage."""
    _, docs = overlay
    kafka = kafka_of(docs)
    assert kafka["apiVersion"] == "kafka.strimzi.io/v1beta2"
    annotations = kafka["metadata"]["annotations"]
    assert annotations["strimzi.io/node-pools"] == "enabled"
    assert annotations["strimzi.io/kraft"] == "enabled"
    spec = kafka["spec"]
    assert "zookeeper" not in spec
    assert re.fullmatch(r"\d+\.\d+\.\d+", spec["kafka"]["version"])
    assert spec["kafka"]["metadataVersion"].startswith(
        ".".join(spec["kafka"]["version"].split(".")[:2]) + "-IV")
    listeners = spec["kafka"]["listeners"]
    assert len({x["name"] for x in listeners}) == len({x["port"] for x in listeners}) \
        == len(listeners)
    for listener in listeners:
        assert re.fullmatch(r"[a-z0-9]{1,11}", listener["name"])
        assert listener["type"] in {"internal", "route", "loadbalancer", "nodeport", "ingress",
                                    "cluster-ip"}
        assert isinstance(listener["tls"], bool) and listener["port"] >= 9092
    assert spec["kafka"]["config"]["auto.create.topics.enable"] is False
    # options Strimzi manages itself and refuses in spec.kafka.config
    forbidden = ("listeners", "advertised.", "broker.", "listener.", "host.name", "port",
                 "inter.broker.listener.name", "sasl.", "ssl.", "security.", "password.",
                 "log.dir", "zookeeper.", "super.user", "authorizer.", "process.roles",
                 "node.id", "controller.")
    assert [k for k in spec["kafka"]["config"] if k.startswith(forbidden)] == []
    assert set(spec["entityOperator"]) == {"topicOperator", "userOperator"}

    pools = of_kind(docs, "KafkaNodePool")
    roles: dict[str, int] = {}
    for pool in pools:
        assert pool["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert set(pool["spec"]["roles"]) <= {"controller", "broker"}
        assert isinstance(pool["spec"]["replicas"], int) and pool["spec"]["replicas"] >= 1
        storage = pool["spec"]["storage"]
        assert storage["type"] == "jbod"
        for volume in storage["volumes"]:
            assert volume["type"] == "persistent-claim" and QUANTITY.match(volume["size"])
            assert isinstance(volume["id"], int)
        for role in pool["spec"]["roles"]:
            roles[role] = roles.get(role, 0) + pool["spec"]["replicas"]
    assert roles.keys() == {"controller", "broker"}
    # a KRaft quorum needs an odd number of controllers
    assert roles["controller"] % 2 == 1


def brokers(docs: list[dict[str, Any]]) -> int:
    return sum(p["spec"]["replicas"] for p in of_kind(docs, "KafkaNodePool")
               if "broker" in p["spec"]["roles"])


def test_topics_are_the_codes_topics_with_safe_replication(overlay):
    """One KafkaTopic per topic and dead-letter topic of contracts/topics.py, for this cluster,
    with at least the code's partitions (dead letters: one); replication never above the
    brokers; production: replication 3 and min.insync.replicas 2 on topics and defaults."""
    name, docs = overlay
    kafka = kafka_of(docs)
    topics = {t["spec"]["topicName"]: t for t in of_kind(docs, "KafkaTopic")}
    assert set(topics) == {*ALL_TOPICS, *DLQ_TOPICS}
    for topic_name, topic in topics.items():
        assert topic["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert DNS_SUBDOMAIN.match(topic["metadata"]["name"])
        spec = topic["spec"]
        assert isinstance(spec["partitions"], int) and isinstance(spec["replicas"], int)
        assert spec["partitions"] >= DEFAULT_PARTITIONS[topic_name]
        if topic_name in DLQ_TOPICS:
            assert spec["partitions"] == 1  # people read them in arrival order
        assert spec["replicas"] <= brokers(docs)
        # Strimzi wants topic config values as strings or numbers, never nested objects
        assert all(isinstance(v, (str, int, bool)) for v in spec["config"].values())
        min_isr = int(spec["config"]["min.insync.replicas"])
        assert min_isr < spec["replicas"] or spec["replicas"] == 1
        if name == "production":
            assert (spec["replicas"], min_isr) == (3, 2)
    config = kafka["spec"]["kafka"]["config"]
    if name == "production":
        assert config["default.replication.factor"] == 3
        assert config["min.insync.replicas"] == 2
        assert config["offsets.topic.replication.factor"] == 3
        assert brokers(docs) >= 3
    assert config["offsets.topic.replication.factor"] <= brokers(docs)


def test_production_sizes_partitions_for_service_areas():
    """Production gives the event topics more partitions than the code's default (room for
    more service areas and consumers), and the topic-bootstrap Job asks for the same."""
    docs = rendered("production")
    events = {t["spec"]["topicName"]: t["spec"]["partitions"]
              for t in of_kind(docs, "KafkaTopic") if t["spec"]["topicName"] in ALL_TOPICS}
    assert set(events.values()) == {12}
    (job,) = [j for j in of_kind(docs, "Job")
              if j["metadata"]["name"] == "homecare-topic-bootstrap"]
    env = {e["name"]: e.get("value")
           for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert int(env["TOPIC_PARTITIONS"]) == 12
    assert int(env["TOPIC_REPLICAS"]) == 3 and int(env["TOPIC_MIN_INSYNC_REPLICAS"]) == 2


def test_postgres_cluster_has_one_database_per_service(overlay):
    """CloudNativePG: a postgresql.cnpg.io/v1 Cluster with initdb and storage; one Database
    resource per service on that cluster, owned by the initdb owner, and each service's
    Deployment uses its own database; production keeps a synchronous standby."""
    name, docs = overlay
    (cluster,) = of_kind(docs, "Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    spec = cluster["spec"]
    assert isinstance(spec["instances"], int) and spec["instances"] >= 1
    assert QUANTITY.match(spec["storage"]["size"])
    owner = spec["bootstrap"]["initdb"]["owner"]
    databases = {}
    for database in of_kind(docs, "Database"):
        assert database["apiVersion"] == "postgresql.cnpg.io/v1"
        assert database["spec"]["cluster"] == {"name": cluster["metadata"]["name"]}
        assert database["spec"]["owner"] == owner
        databases[database["spec"]["name"]] = database
    assert set(databases) == set(SERVICE_NAMES)
    assert spec["bootstrap"]["initdb"]["database"] in databases
    for deployment in of_kind(docs, "Deployment"):
        service = deployment["metadata"]["name"]
        env = {e["name"]: e.get("value")
               for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env[f"{service.upper()}_POSTGRES_DBNAME"] in databases
    # synchronous standbys must exist, or every commit would wait forever
    assert 0 <= spec["minSyncReplicas"] <= spec["maxSyncReplicas"] < spec["instances"]
    if name == "production":
        assert spec["instances"] == 3 and spec["minSyncReplicas"] >= 1
    else:
        assert spec["instances"] == 1
