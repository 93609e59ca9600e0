"""Settings from the environment.

Shared settings use the prefix ``HOMECARE_`` (plus the conventional ``KAFKA_BOOTSTRAP_SERVERS``);
each service reads its own with its own prefix (``DISPATCH_``, ``LEDGER_``, ``TIMEBANK_``), and the
eventsourcing library honours the same prefixes for its event-store settings
(e.g. ``LEDGER_POSTGRES_DBNAME`` overrides ``POSTGRES_DBNAME`` for the ledger only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE_NAMES = ("dispatch", "ledger", "timebank")


class SharedSettings(BaseSettings):
    """What every service of one deployment agrees on."""

    model_config = SettingsConfigDict(env_prefix="HOMECARE_", extra="ignore")

    data_dir: Path = Path("var")
    # sqlite: one file per service under data_dir; postgres: one schema (or database) per service
    store: Literal["sqlite", "postgres"] = "sqlite"
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_user: str = "postgres"
    postgres_password: str = ""
    postgres_dbname: str = "homecare"
    kafka_bootstrap_servers: str | None = Field(
        default=None, validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    # The broker log that consumer and outbox-relay positions belong to: they are tracked as
    # <name>@<broker_log_id>, so a new log (an empty broker) starts them from 0. A host that
    # starts its own memory-only local broker uses that broker's incarnation; `homecare up
    # --distributed` hands its broker's to the services. Unset with a persistent Kafka: the
    # positions keep their plain names.
    broker_log_id: str | None = None
    # Follow the broker's log while running: the log id is derived from the cluster id the
    # broker reports (a memory-only local broker's incarnation), checked every
    # broker_log_check_s; when it changes (the broker was restarted empty) the host re-creates
    # the topics and moves its consumers and relays to the new log. On by itself for a host that
    # starts its own local broker; opt-in otherwise. Leave off with a persistent Kafka.
    broker_log_from_cluster: bool = False
    broker_log_check_s: float = 3.0
    # Consumer-group session timeout: tansu's group joins are slow with Kafka's defaults.
    kafka_session_timeout_ms: int = 6000
    kafka_heartbeat_interval_ms: int = 1000
    # How often a consumer commits its offsets to the broker (at most; positions are tracked
    # in the event store with every message, the broker's offset only says where to resume).
    kafka_commit_interval_s: float = 0.5
    # Consumer groups are named <prefix>-<service>; tests use their own prefix to stay apart.
    consumer_group_prefix: str = "homecare"
    consumer_max_attempts: int = 4
    consumer_retry_backoff_s: float = 0.2
    outbox_poll_interval_s: float = 0.05
    log_level: str = "INFO"
    log_json: bool = True
    timezone: str = "Asia/Shanghai"
    # Encryption at rest (services/runtime/cipher.py): the event-store key as base64, or a file
    # holding it (a mounted Kubernetes secret); neither: generated once under data_dir/keys/.
    cipher_key: str | None = None
    cipher_key_file: Path | None = None
    # Keys used before a rotation, still tried when reading (comma-separated base64).
    cipher_old_keys: str | None = None
    # Who may call: "local" signs its own tokens (keys and users under data_dir/auth, for local
    # runs and the demo); "oidc" verifies an external OpenID Connect provider's tokens.
    auth_mode: Literal["local", "oidc"] = "local"
    oidc_issuer: str | None = None
    oidc_audience: str = "homecare"
    # Found through the issuer's discovery document when not given.
    oidc_jwks_url: str | None = None
    # The claim holding the caller's role (one of services.runtime.auth.ROLES, or a list).
    oidc_role_claim: str = "role"
    # Fault injection for the reliability tests only: the process dies right after a consumer's
    # database commit and before its broker commit, as a crash at the worst moment would.
    fault_exit_after_commit: bool = False


class ServiceSettings(BaseSettings):
    """Per-service settings; the env prefix is the service name (``DISPATCH_`` ...)."""

    model_config = SettingsConfigDict(extra="ignore")

    consumer_group: str | None = None
    partitions: int = 3

    @classmethod
    def for_service(cls, service: str) -> ServiceSettings:
        class _Prefixed(cls):  # type: ignore[valid-type,misc]
            model_config = SettingsConfigDict(env_prefix=f"{service.upper()}_", extra="ignore")

        return cls(**_Prefixed().model_dump())
