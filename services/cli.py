"""The `homecare` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from services.runtime.settings import SERVICE_NAMES

REPO_ROOT = Path(__file__).resolve().parents[1]


def _up(args: argparse.Namespace) -> int:
    import uvicorn

    if args.data_dir:
        os.environ["HOMECARE_DATA_DIR"] = args.data_dir
    if args.store:
        os.environ["HOMECARE_STORE"] = args.store
    if args.kafka:
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = args.kafka

    from services.demo import SEEDERS
    from services.runtime.host import Host, create_http_app
    from services.runtime.observability import configure_logging
    from services.runtime.settings import SharedSettings
    from services.system import build_units

    settings = SharedSettings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    names = [n.strip() for n in args.services.split(",") if n.strip()]
    units = build_units(names, settings)
    if not args.no_demo_data:
        for unit in units:
            SEEDERS[unit.name](unit.application)
    host = Host(units, settings)
    app = create_http_app(host, title="homecare " + "+".join(names))
    print(f"homecare: serving {', '.join(names)} on http://{args.host}:{args.port} "
          f"(API docs at /docs, event stores: {settings.store} in {settings.data_dir})",
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                timeout_graceful_shutdown=15)
    return 0


def _contracts_export(args: argparse.Namespace) -> int:
    from contracts.export import write_schemas
    from services.runtime.messaging import asyncapi_documents

    schema_dir = Path(args.dir)
    write_schemas(schema_dir)
    asyncapi_dir = Path(args.asyncapi_dir)
    asyncapi_dir.mkdir(parents=True, exist_ok=True)
    for service, document in asyncapi_documents().items():
        (asyncapi_dir / f"{service}.json").write_text(
            json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
            encoding="utf-8")
    print(f"wrote JSON Schemas to {schema_dir} and AsyncAPI documents to {asyncapi_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="homecare",
        description="Home-based elderly care: dispatch, labor-hours ledger and time bank.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser(
        "up", help="run the services (all three in one process by default)",
        description="Run services with HTTP on one port. Without KAFKA_BOOTSTRAP_SERVERS (or "
                    "--kafka) a local tansu broker is started on loopback and stopped on exit. "
                    "Event stores: SQLite files under the data directory, or PostgreSQL with "
                    "--store postgres (HOMECARE_POSTGRES_HOST/PORT/USER/PASSWORD/DBNAME; one "
                    "schema per service).")
    up.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default %(default)s)")
    up.add_argument("--port", type=int, default=8000, help="port (default %(default)s)")
    up.add_argument("--services", default=",".join(SERVICE_NAMES),
                    help="comma-separated services to run in this process (default: all)")
    up.add_argument("--store", choices=["sqlite", "postgres"], default=None,
                    help="event store (default: HOMECARE_STORE or sqlite)")
    up.add_argument("--data-dir", default=None,
                    help="where SQLite event stores and the broker log go (default ./var)")
    up.add_argument("--kafka", default=None,
                    help="bootstrap servers of an external Kafka (default: start tansu locally)")
    up.add_argument("--no-demo-data", action="store_true",
                    help="do not load the demo elders, caregivers and volunteers")
    up.set_defaults(func=_up)

    contracts = sub.add_parser("contracts", help="integration event contracts")
    csub = contracts.add_subparsers(dest="contracts_command", required=True)
    export = csub.add_parser("export", help="write JSON Schemas and AsyncAPI documents")
    export.add_argument("--dir", default=str(REPO_ROOT / "contracts" / "schemas"))
    export.add_argument("--asyncapi-dir", default=str(REPO_ROOT / "contracts" / "asyncapi"))
    export.set_defaults(func=_contracts_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
