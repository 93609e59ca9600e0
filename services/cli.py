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

    if args.distributed:
        return _up_distributed(args)
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
    if not args.no_demo_data and app.state.auth.users is not None:
        from services.demo import DEMO_PASSWORD, seed_demo_users

        seed_demo_users(app.state.auth.users)
        print(f"homecare: demo users {', '.join(app.state.auth.users.usernames())} "
              f"(password {DEMO_PASSWORD}; `homecare users add` for real ones)", flush=True)
    print(f"homecare: serving {', '.join(names)} on http://{args.host}:{args.port} "
          f"(API docs at /docs, event stores: {settings.store} in {settings.data_dir})",
          flush=True)
    from services.runtime.host import DrainingServer

    # SIGTERM: not ready at once, requests already sent are still read for a second, those in
    # flight finished (up to 15 s), then the host drains (Host.stop); exit status -15.
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                            timeout_graceful_shutdown=15)
    DrainingServer(config, host, delay_s=1.0).run()
    return 0


def _up_distributed(args: argparse.Namespace) -> int:
    """One process per service, as in the cluster: a broker started once (or --kafka), the
    event stores in PostgreSQL (one database per service), service i on port + i. Ctrl-C or
    SIGTERM stops them all; if one dies the others are stopped too."""
    import signal
    import subprocess
    import time
    import urllib.request

    from services.runtime.broker import LocalBroker

    names = [n.strip() for n in args.services.split(",") if n.strip()]
    env = dict(os.environ)
    env["HOMECARE_STORE"] = args.store or os.environ.get("HOMECARE_STORE") or "postgres"
    base_db = os.environ.get("HOMECARE_POSTGRES_DBNAME", "homecare")
    for name in names:  # one database per service, as CloudNativePG gives them
        env.setdefault(f"{name.upper()}_POSTGRES_DBNAME", f"{base_db}_{name}")
    if args.data_dir:
        env["HOMECARE_DATA_DIR"] = args.data_dir
    broker = None
    bootstrap = args.kafka or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = LocalBroker(log_dir=args.data_dir or "var").start()
        bootstrap = broker.bootstrap_servers
        # A memory-only log, new on every run: the services track their positions in it by
        # its name, so the PostgreSQL stores' positions from the last run do not apply.
        env["HOMECARE_BROKER_LOG_ID"] = broker.incarnation or ""
        # ... and follow it: should the broker be restarted (empty) under them, they move on.
        env["HOMECARE_BROKER_LOG_FROM_CLUSTER"] = "true"
    env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        # Ctrl-C and SIGTERM only set a flag: a KeyboardInterrupt raised wherever the loop
        # happens to be (inside urllib, subprocess) is not the way to stop three processes.
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    children: dict[str, subprocess.Popen[bytes]] = {}
    code = 0
    try:
        for i, name in enumerate(names):
            command = [sys.executable, "-m", "services.cli", "up", "--services", name,
                       "--host", args.host, "--port", str(args.port + i)]
            if args.no_demo_data:
                command.append("--no-demo-data")
            # Own process group: a Ctrl-C reaches the parent only, which stops them in order.
            children[name] = subprocess.Popen(command, env=env, start_new_session=True)
        print(f"homecare: distributed, broker {bootstrap}, store {env['HOMECARE_STORE']}: "
              + ", ".join(f"{n} on http://{args.host}:{args.port + i}"
                          for i, n in enumerate(names)), flush=True)
        ready: set[str] = set()
        while not stopping:
            for i, name in enumerate(names):
                exited = children[name].poll()
                if exited is not None:
                    print(f"homecare: {name} exited with {exited}; stopping the others",
                          flush=True)
                    code = exited or 1
                    stopping = True
                    break
                if name not in ready:
                    try:
                        url = f"http://{args.host}:{args.port + i}/readyz"
                        with urllib.request.urlopen(url, timeout=1) as answer:
                            if answer.status == 200:
                                ready.add(name)
                                print(f"homecare: {name} ready", flush=True)
                    except OSError:
                        pass
            time.sleep(0.5)
    finally:
        print("homecare: stopping " + ", ".join(names), flush=True)
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 25
        for name, child in children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"homecare: {name} did not stop in time; killed", flush=True)
                child.kill()
                child.wait()
        if broker is not None:
            broker.stop()
    print(f"homecare: stopped (exit status {code})", flush=True)
    return code


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


def _demo(args: argparse.Namespace) -> int:
    """Start the system embedded, generate a district, plan and simulate a day, summarise."""
    import asyncio
    from datetime import date as _date
    from datetime import timedelta

    from services.runtime.broker import free_port
    from services.simulation.district import generate
    from services.simulation.importer import import_district
    from services.simulation.run import simulate_day, yesterday
    from services.simulation.summary import format_summary

    day = _date.fromisoformat(args.date) if args.date else (
        yesterday() + timedelta(days=2) if args.url else yesterday())
    if args.elders or args.caregivers:
        if not (args.elders and args.caregivers):
            print("homecare demo: --elders and --caregivers go together", file=sys.stderr)
            return 2
        district = import_district(args.elders, args.caregivers, day=day, seed=args.seed)
    else:
        district = generate(args.seed, args.size, day)
    run_dir = Path(args.data_dir or f"var/demo/{district.size}-{args.seed}-{day}")
    if not args.data_dir:  # a fresh run directory each time: -2, -3 ...
        base, n = run_dir, 1
        while (run_dir / "stores").exists():
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")
    if (run_dir / "stores").exists():
        print(f"homecare demo: {run_dir} holds an earlier run; choose another --data-dir",
              file=sys.stderr)
        return 2
    port = args.port or free_port()
    speed = args.speed if args.speed is not None else (0.0 if args.headless else 240.0)

    def ready(system: object, d: object) -> None:
        base = getattr(system, "base_url", None)
        auth = getattr(system, "auth", None)
        if base and auth is not None and auth.users is not None:
            from services.demo import DEMO_PASSWORD, seed_demo_users

            staff = [c for c in district.caregivers if c.kind != "volunteer"]
            seed_demo_users(auth.users, area=district.service_area_id,
                            caregiver=staff[0].caregiver_id if staff else "C-1",
                            volunteer=(district.volunteers[0].caregiver_id
                                       if district.volunteers else "V-1"),
                            elder=district.elders[0].elder_id)
            print(f"homecare demo: log in as {', '.join(auth.users.usernames())} (password "
                  f"{DEMO_PASSWORD})", flush=True)
        if base:
            print(f"homecare demo: dashboard {base}/dispatch/dashboard/?area="
                  f"{district.service_area_id}&date={day} (API docs {base}/docs)", flush=True)

    import httpx

    try:
        summary = asyncio.run(simulate_day(
            district, run_dir, serve=not args.headless, host=args.host, port=port, speed=speed,
            on_ready=ready, linger=not args.headless and not args.exit,
            plan_time_limit_s=args.plan_seconds, url=args.url,
            progress=lambda text: print(text, flush=True)))
    except (KeyboardInterrupt, httpx.TransportError) as stopped:
        # Ctrl-C stops the embedded server first; the simulation then loses its connection.
        print(f"homecare demo: stopped ({type(stopped).__name__}); the run so far is in "
              f"{run_dir}", file=sys.stderr)
        return 130
    if args.url:
        plan = summary["plan"]
        print(f"homecare demo: loaded {summary['loaded']} into {args.url} and planned {day}: "
              f"{len(plan['scheduled'])} visits scheduled, {len(plan['unassigned'])} "
              f"unassigned, {plan['travel_minutes']} travel minutes")
        return 0
    print(format_summary(summary))
    print(f"homecare demo: run recorded in {run_dir} (district.json, summary.json)")
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=1))
    return 0 if all(summary["invariants"].values()) else 1


def _whatif(args: argparse.Namespace) -> int:
    """Replay a recorded day under other policies and compare the KPIs."""
    import asyncio

    from services.simulation.whatif import POLICIES, compare_runs

    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        print(f"homecare whatif: unknown policies {unknown}; choose from "
              f"{', '.join(POLICIES)}", file=sys.stderr)
        return 2
    report = asyncio.run(compare_runs(
        Path(args.run), names, Path(args.out) if args.out else None,
        dispatch_only=args.dispatch_only, progress=lambda text: print(text, flush=True)))
    print(report["text"])
    print(f"homecare whatif: report {report['html']} and {report['json']}")
    return 0


def _auth(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from services.runtime.auth import auth_from_settings
    from services.runtime.settings import SharedSettings

    if args.data_dir:
        os.environ["HOMECARE_DATA_DIR"] = args.data_dir
    settings = SharedSettings()
    if settings.auth_mode != "local":
        raise SystemExit("homecare: users and tokens are kept by the identity provider "
                         "(HOMECARE_AUTH_MODE=oidc), not here")
    return auth_from_settings(settings)


def _principal(args: argparse.Namespace, subject: str):  # type: ignore[no-untyped-def]
    from services.runtime.auth import Principal

    return Principal(subject=subject, role=args.role, service_areas=frozenset(args.area or ()),
                     caregiver_id=args.caregiver, volunteer_id=args.volunteer,
                     elder_ids=frozenset(args.elder or ()), name=args.name or "")


def _users(args: argparse.Namespace) -> int:
    import getpass

    auth = _auth(args)
    assert auth.users is not None
    if args.users_command == "list":
        for name in auth.users.usernames():
            print(name)
        return 0
    if args.users_command == "remove":
        if not auth.users.remove(args.username):
            print(f"homecare: no user {args.username}", file=sys.stderr)
            return 1
        return 0
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.username}: ")
    try:
        auth.users.add(args.username, password, _principal(args, args.username))
    except ValueError as error:
        print(f"homecare: {error}", file=sys.stderr)
        return 2
    print(f"homecare: user {args.username} ({args.role}) saved in {auth.users.path}")
    return 0


def _token(args: argparse.Namespace) -> int:
    auth = _auth(args)
    assert auth.issuer is not None
    print(auth.issuer.issue(_principal(args, args.subject or f"cli-{args.role}"),
                            ttl_s=int(args.ttl_hours * 3600)))
    return 0


def _audit_export(args: argparse.Namespace) -> int:
    from services.runtime.audit import trail_csv
    from services.runtime.audit_api import fetch_trails

    token = args.token or os.environ.get("HOMECARE_TOKEN")
    if not token:  # local mode: an auditor's token from the same data directory
        auth = _auth(args)
        assert auth.issuer is not None
        from services.runtime.auth import Principal

        token = auth.issuer.issue(Principal(subject="cli-audit-export", role="auditor"),
                                  ttl_s=600)
    try:
        rows = fetch_trails(args.url or ["http://127.0.0.1:8000"], args.elder,
                            {"authorization": f"Bearer {token}"},
                            [s for s in args.services.split(",") if s])
    except (RuntimeError, OSError) as error:
        print(f"homecare: {error}", file=sys.stderr)
        return 1
    text = (trail_csv(rows) if args.format == "csv" else
            json.dumps({"elder_id": args.elder, "events": rows}, ensure_ascii=False, indent=1))
    out = Path(args.out or f"audit-{args.elder}.{args.format}")
    out.write_text(text, encoding="utf-8")
    print(f"homecare: {len(rows)} events of {args.elder} written to {out}")
    return 0


def _security_table(args: argparse.Namespace) -> int:
    from services.runtime.access import access_table_markdown

    text = access_table_markdown(system_http_app())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"homecare: wrote {args.out}")
    return 0


def system_http_app():  # type: ignore[no-untyped-def]
    """The whole system's HTTP app, not started (for its routes: access table, OpenAPI)."""
    import tempfile

    from services.runtime.host import Host, create_http_app
    from services.runtime.settings import SharedSettings
    from services.system import build_units

    settings = SharedSettings(data_dir=Path(tempfile.mkdtemp(prefix="homecare-routes-")),
                              store="sqlite", auth_mode="local")
    units = build_units(list(SERVICE_NAMES), settings)
    return create_http_app(Host(units, settings, bootstrap_servers="unused:9092"))


def _add_identity_args(parser: argparse.ArgumentParser) -> None:
    from services.runtime.auth import ROLES

    parser.add_argument("--role", required=True, choices=ROLES)
    parser.add_argument("--area", action="append",
                        help="a service area that is theirs (dispatcher, finance); repeatable")
    parser.add_argument("--caregiver", default=None, help="their caregiver id (caregiver)")
    parser.add_argument("--volunteer", default=None,
                        help="their person id in the time bank (volunteer)")
    parser.add_argument("--elder", action="append",
                        help="an elder who is theirs (elder or family proxy); repeatable")
    parser.add_argument("--name", default=None, help="display name")
    parser.add_argument("--data-dir", default=None, help="data directory (default ./var)")


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
    up.add_argument("--distributed", action="store_true",
                    help="one process per service (service i on --port + i), against "
                         "PostgreSQL (one database per service, <dbname>_<service>) and one "
                         "broker started once, the shape of the cluster; Ctrl-C stops all")
    up.set_defaults(func=_up)

    demo = sub.add_parser(
        "demo", help="simulate a day of a generated district in the embedded system",
        description="Starts the three services embedded (SQLite stores under the run "
                    "directory, a local broker), generates a district of Yiwu (or imports "
                    "one), plans yesterday (Asia/Shanghai) and simulates it at accelerated "
                    "time through the API while the dashboard can watch, then prints a "
                    "summary. Exit status 1 when an invariant of the summary breaks.")
    demo.add_argument("--headless", action="store_true",
                      help="do not serve HTTP; run as fast as possible and exit (for CI)")
    demo.add_argument("--size", choices=["tiny", "small", "district", "county"],
                      default="district", help="district size (default %(default)s)")
    demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    demo.add_argument("--date", default=None, help="day to simulate (default: yesterday)")
    demo.add_argument("--elders", default=None, help="import elders from CSV/XLSX")
    demo.add_argument("--caregivers", default=None, help="import caregivers from CSV/XLSX")
    demo.add_argument("--speed", type=float, default=None,
                      help="simulated seconds per real second (default 240 when serving, "
                           "as fast as possible when headless)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000, help="0: a free port")
    demo.add_argument("--data-dir", default=None,
                      help="run directory (default var/demo/<size>-<seed>-<date>)")
    demo.add_argument("--exit", action="store_true",
                      help="stop serving once the day is summarised")
    demo.add_argument("--json", action="store_true", help="also print the summary as JSON")
    demo.add_argument("--url", default=None,
                      help="load the district into a system already running there (e.g. "
                           "`homecare up`) and plan the day (default: tomorrow), without "
                           "simulating it: a running system sweeps with its own clock")
    demo.add_argument("--plan-seconds", type=float, default=2.0,
                      help="the router's time budget for the daily plan and replans "
                           "(default %(default)s)")
    demo.set_defaults(func=_demo)

    whatif = sub.add_parser(
        "whatif", help="replay a recorded day under other policies and compare KPIs",
        description="Replays the day recorded by `homecare demo` (its district.json: people, "
                    "plans, orders and the day's noise) under each policy into a separate "
                    "store, and writes an HTML report with charts and a JSON file.")
    whatif.add_argument("run", help="run directory of `homecare demo` (holds district.json)")
    whatif.add_argument("--policies", default="baseline,entitlement_6h,two_more_caregivers,"
                        "routing_budget_10s,welfare_checks_by_staff",
                        help="comma-separated (default: all)")
    whatif.add_argument("--out", default=None, help="report directory (default <run>/whatif)")
    whatif.add_argument("--dispatch-only", action="store_true",
                        help="dispatch alone, no broker: faster, without ledger and time-bank "
                             "KPIs")
    whatif.set_defaults(func=_whatif)

    users = sub.add_parser("users", help="local users who may log in (HOMECARE_AUTH_MODE=local)")
    usub = users.add_subparsers(dest="users_command", required=True)
    add = usub.add_parser("add", help="add a user or change one (asks for the password)")
    add.add_argument("username")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    _add_identity_args(add)
    listing = usub.add_parser("list", help="user names")
    listing.add_argument("--data-dir", default=None)
    remove = usub.add_parser("remove", help="remove a user")
    remove.add_argument("username")
    remove.add_argument("--data-dir", default=None)
    users.set_defaults(func=_users)

    token = sub.add_parser("token", help="print a bearer token (local mode; for scripts)")
    token.add_argument("--subject", default=None)
    token.add_argument("--ttl-hours", type=float, default=1.0)
    _add_identity_args(token)
    token.set_defaults(func=_token)

    security = sub.add_parser("security", help="security documents")
    ssub = security.add_subparsers(dest="security_command", required=True)
    table = ssub.add_parser("table", help="write the endpoint x role access table")
    table.add_argument("--out", default=str(REPO_ROOT / "docs" / "security" / "access.md"))
    table.set_defaults(func=_security_table)

    audit = sub.add_parser("audit", help="the audit trail")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    export_trail = asub.add_parser(
        "export", help="one elder's audit trail from every service, merged (CSV or JSON)")
    export_trail.add_argument("--elder", required=True, help="the elder's id")
    export_trail.add_argument("--url", action="append",
                              help="a server's base URL (repeat for one process per service; "
                                   "default http://127.0.0.1:8000)")
    export_trail.add_argument("--token", default=None,
                              help="bearer token (default $HOMECARE_TOKEN, else an auditor's "
                                   "token from the local data directory)")
    export_trail.add_argument("--services", default=",".join(SERVICE_NAMES))
    export_trail.add_argument("--format", choices=("csv", "json"), default="csv")
    export_trail.add_argument("--out", default=None,
                              help="file to write (default audit-<elder>.<format>)")
    export_trail.add_argument("--data-dir", default=None,
                              help="data directory of the local token issuer (default ./var)")
    export_trail.set_defaults(func=_audit_export)

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
