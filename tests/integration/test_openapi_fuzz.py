"""schemathesis against the OpenAPI schema of the whole system (dispatch, ledger and time bank in
one app, PostgreSQL event stores, a tansu broker of the module's own), as an admin.

For every operation, generated requests (valid and invalid) must never get a 5xx, and every
status must be one the schema documents for that operation; input that breaks the schema must be
refused with a 4xx. A second run without a token: every guarded operation answers 401, never
anything it does not document.

Bounded and deterministic by default (derandomized, a few examples per operation);
``HOMECARE_FUZZ_EXAMPLES=200`` runs a bigger search.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import negative_data_rejection, status_code_conformance

from services.demo import SEEDERS
from services.runtime.broker import LocalBroker
from services.runtime.host import Host, create_http_app
from services.runtime.settings import SharedSettings
from services.system import build_units
from tests.support.auth import bearer_for

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("HOMECARE_FUZZ_EXAMPLES", "") or 3)
ONLY = os.environ.get("HOMECARE_FUZZ_ONLY", "")  # fuzz only paths containing this
# Endpoints that answer anyone: liveness, readiness, metrics, and logging in itself.
OPEN = {"/healthz", "/readyz", "/metrics", "/auth/token", "/auth/jwks.json",
        "/asyncapi/{service}"}
# Found by this test, not fixed yet (another area's work in progress): reported in the output,
# tolerated here, so that everything else stays guarded. Remove an entry once it is fixed.
KNOWN: dict[tuple[str, str], str] = {}
# Generous for a loaded machine; /readyz bounds itself to ~3 s (host.READINESS_CHECK_TIMEOUT_S).
TIMEOUT_S = 30.0
CHECKS = (not_a_server_error, status_code_conformance, negative_data_rejection)


@pytest.fixture(scope="module")
def system_app(tmp_path_factory: pytest.TempPathFactory, postgres_server: Any) -> Iterator[Any]:
    """The whole system's ASGI app, seeded with the demo district; schemathesis runs its
    lifespan (the Host) on its own event loop and we stop it at the end."""
    tmp = tmp_path_factory.mktemp("openapi-fuzz")
    broker = LocalBroker(log_dir=tmp)
    broker.start()
    dbname = f"homecare_oa_{uuid.uuid4().hex[:10]}"
    settings_ = SharedSettings(
        store="postgres", data_dir=tmp, postgres_dbname=dbname,
        postgres_host=postgres_server.host, postgres_port=postgres_server.port,
        postgres_user=postgres_server.user, postgres_password=postgres_server.password,
        kafka_session_timeout_ms=2000, kafka_heartbeat_interval_ms=500,
        consumer_group_prefix=f"oa-{uuid.uuid4().hex[:8]}",
    )
    units = build_units(["dispatch", "ledger", "timebank"], settings_)
    for unit in units:
        SEEDERS[unit.name](unit.application)
    # schemathesis' pytest plugin ends the lifespan after each test and the next test starts it
    # again: the stores must stay open in between (closed here at the end).
    app = create_http_app(Host(units, settings_, bootstrap_servers=broker.bootstrap_servers,
                               close_stores=False))
    try:
        yield app
    finally:
        shutdown_lifespans()
        for unit in units:
            unit.application.close()
        broker.stop()
        with psycopg.connect(host=postgres_server.host, port=postgres_server.port,
                             user=postgres_server.user, password=postgres_server.password,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.fixture(scope="module")
def api_schema(system_app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", system_app)


def _bounded(case: Any) -> Any:
    """A server-sent event stream follows for ever: ask it for what is there and the end
    (`follow=false`), unless the case itself is about that parameter's value."""
    if case.path.endswith("/stream"):
        query = dict(case.query or {})
        if query.get("follow") in (None, True, "true"):
            query["follow"] = "false"
        case.query = query
    return case


def _fuzz(schema: Any, modes: tuple[GenerationMode, ...], call: Callable[[Any], None],
          examples: int = EXAMPLES) -> list[str]:
    """Run `call` on generated cases of every operation; the failures, one line each.
    (schemathesis' own pytest plugin for lazily loaded schemas does not run on pytest 9.)"""
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 50, "the system's schema lists too few operations"
    for operation in operations:
        if ONLY and ONLY not in operation.path:
            continue
        for mode in modes:
            @settings(FUZZ_SETTINGS, max_examples=examples)
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                call(_bounded(case))

            try:
                run()
            except Unsatisfiable:
                continue  # nothing can break its schema (e.g. a lone string path parameter)
            except (Exception, BaseExceptionGroup) as error:  # collected: one report for all
                first = (str(error).strip() or repr(error)).splitlines()[:12]
                known = KNOWN.get((operation.method.upper(), operation.path))
                if known:
                    warnings.warn(f"known: {operation.method.upper()} {operation.path}: {known}: "
                                  f"{first[0]}", stacklevel=1)
                    continue
                failures.append(f"{operation.method.upper()} {operation.path} ({mode}): "
                                + "\n    ".join(first))
    return failures


FUZZ_SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                         phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck), report_multiple_bugs=False)


def test_as_admin_no_server_error_and_only_documented_statuses(api_schema: Any,
                                                               system_app: Any) -> None:
    """An admin's generated requests, valid and invalid, to every operation: no 5xx, only
    documented statuses, and schema-invalid input refused with a 4xx."""
    headers = bearer_for(system_app, "admin")
    failures = _fuzz(api_schema, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
                     lambda case: case.call_and_validate(headers=headers, checks=CHECKS,
                                                         timeout=TIMEOUT_S))
    assert not failures, f"{len(failures)} operations failed:\n" + "\n".join(failures)


def test_without_a_token_every_guarded_operation_says_401(api_schema: Any) -> None:
    """Without a token nothing but the open endpoints answers anything but 401 (documented)."""
    def call(case: Any) -> None:
        response = case.call_and_validate(checks=(not_a_server_error, status_code_conformance),
                                          timeout=TIMEOUT_S)
        if case.path not in OPEN:
            assert response.status_code == 401, response.status_code

    # The token is checked before anything else: a couple of requests per operation say it.
    failures = _fuzz(api_schema, (GenerationMode.POSITIVE,), call, examples=min(EXAMPLES, 2))
    assert not failures, f"{len(failures)} operations failed:\n" + "\n".join(failures)
