"""Topic bootstrap: create the topics a service needs before anything produces or subscribes.

Brokers (tansu included) auto-create unknown topics on first produce with default settings (one
partition), which would silently break per-key ordering over service areas. So every service
calls `ensure_topics()` at startup with its TopicSpecs. It is idempotent, creates the `.dlq`
companion topics when asked, waits until the metadata shows every topic with a leader per
partition, and retries with backoff while the broker is still coming up.

Written for kafka-python >= 3.0 (dict form of ``create_topics`` with ``raise_errors=False``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError, for_code

log = logging.getLogger(__name__)

DLQ_SUFFIX = ".dlq"


def dlq_topic(topic: str) -> str:
    """Name of the dead-letter topic that receives `topic`'s poison messages."""
    return f"{topic}{DLQ_SUFFIX}"


@dataclass(frozen=True)
class TopicSpec:
    """A topic as a service needs it. With dlq=True its `<name>.dlq` topic is created as well
    (same partitions, so a poison message keeps its key's partition)."""

    name: str
    partitions: int = 1
    replication: int = 1
    config: Mapping[str, str] = field(default_factory=dict)
    dlq: bool = False

    def __post_init__(self) -> None:
        if not self.name or self.partitions < 1 or self.replication < 1:
            raise ValueError(f"invalid topic spec {self!r}")

    def expanded(self) -> list[TopicSpec]:
        """This topic and, if asked for, its dead-letter topic."""
        if not self.dlq:
            return [self]
        dead_letters = TopicSpec(
            dlq_topic(self.name), self.partitions, self.replication, dict(self.config)
        )
        return [self, dead_letters]


class TopicBootstrapError(RuntimeError):
    """Topics could not be created or did not become ready in time."""


def _expand(specs: Iterable[TopicSpec]) -> dict[str, TopicSpec]:
    wanted: dict[str, TopicSpec] = {}
    for spec in specs:
        for item in spec.expanded():
            known = wanted.get(item.name)
            if known is not None and known.partitions != item.partitions:
                raise ValueError(f"conflicting specs for topic {item.name}: {known} vs {item}")
            wanted.setdefault(item.name, item)
    return wanted


def _not_ready(described: list[dict[str, Any]], names: Iterable[str]) -> dict[str, str]:
    """Topics (by name) that the metadata does not show as usable yet, with the reason."""
    by_name = {topic.get("name"): topic for topic in described}
    pending = {}
    for name in names:
        topic = by_name.get(name)
        if topic is None:
            pending[name] = "missing from metadata"
        elif topic.get("error_code", 0):
            pending[name] = for_code(topic["error_code"]).__name__
        elif not topic.get("partitions"):
            pending[name] = "no partitions"
        elif any(p.get("error_code", 0) or p.get("leader_id", -1) < 0 for p in topic["partitions"]):
            pending[name] = "partition without leader"
    return pending


def _create_missing(admin: KafkaAdminClient, wanted: dict[str, TopicSpec]) -> list[str]:
    existing = set(admin.list_topics())
    missing = [spec for name, spec in wanted.items() if name not in existing]
    if not missing:
        return []
    request = {
        spec.name: {
            "num_partitions": spec.partitions,
            "replication_factor": spec.replication,
            "configs": dict(spec.config),
        }
        for spec in missing
    }
    response = admin.create_topics(request, raise_errors=False)
    created = []
    for result in response["topics"]:
        error = for_code(result["error_code"])
        if result["error_code"] == 0:
            created.append(result["name"])
        elif error is TopicAlreadyExistsError:
            # Someone else (another service instance) created it first: that is fine.
            continue
        elif getattr(error, "retriable", False):
            raise error(result.get("error_message") or result["name"])
        else:
            raise TopicBootstrapError(
                f"cannot create topic {result['name']}: {error.__name__} "
                f"{result.get('error_message') or ''}".rstrip()
            )
    return created


def _warn_on_drift(described: list[dict[str, Any]], wanted: dict[str, TopicSpec]) -> None:
    for topic in described:
        spec = wanted.get(topic.get("name", ""))
        count = len(topic.get("partitions") or [])
        if spec is not None and count and count != spec.partitions:
            # Never repartition automatically: it would move keys to other partitions.
            log.warning(
                "topic %s exists with %d partitions, spec asks for %d; leaving it as it is",
                spec.name,
                count,
                spec.partitions,
            )


def ensure_topics(
    bootstrap_servers: str,
    specs: Iterable[TopicSpec],
    timeout: float = 30.0,
    *,
    client_id: str = "homecare-topic-bootstrap",
) -> list[str]:
    """Create the missing topics (and their `.dlq` topics where asked) and wait until usable.

    Returns the names of the topics this call created (empty when all existed already).
    Retries with exponential backoff until `timeout` seconds have passed, then raises
    TopicBootstrapError with the last problem seen.
    """
    wanted = _expand(specs)
    if not wanted:
        return []
    deadline = time.monotonic() + timeout
    delay = 0.1
    created: list[str] = []
    last_problem = "not tried"
    while True:
        remaining = deadline - time.monotonic()
        admin: KafkaAdminClient | None = None
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap_servers,
                client_id=client_id,
                # Short bootstrap attempts: our own loop retries faster than the client's backoff.
                bootstrap_timeout_ms=max(int(min(remaining, 2.0) * 1000), 100),
                request_timeout_ms=max(int(min(remaining, 10.0) * 1000), 500),
            )
            created += _create_missing(admin, wanted)
            described = admin.describe_topics(list(wanted))
            pending = _not_ready(described, wanted)
            if not pending:
                _warn_on_drift(described, wanted)
                if created:
                    log.info("created topics %s", ", ".join(sorted(created)))
                return sorted(created)
            last_problem = f"not ready: {pending}"
        except TopicBootstrapError:
            raise
        except (KafkaError, OSError) as error:
            last_problem = str(error) or type(error).__name__
        finally:
            if admin is not None:
                admin.close()
        if time.monotonic() + delay >= deadline:
            raise TopicBootstrapError(
                f"topics {sorted(wanted)} not ready on {bootstrap_servers} after {timeout:.0f}s: "
                f"{last_problem}"
            )
        log.debug("topic bootstrap retry in %.1fs: %s", delay, last_problem)
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
