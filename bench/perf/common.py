"""What the performance benchmarks share: percentiles, tables, the machine, tokens, and service
processes started as in production (`homecare up --services X --store postgres`).

Pure helpers (percentiles, summaries, tables, argument checks) come first and are unit-tested;
the process helpers below them start real services against the machine's PostgreSQL.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


# Pure --------------------------------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by the nearest-rank method: the smallest value with at
    least p % of the values at or below it. Raises on an empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is not within 0..100")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


# An alert grace of ten years: the sweep never calls a bench's past visits late, missed or
# overrunning (they lie in past days on purpose; a check-in is what is measured, not alerts).
NEVER_MIN = 10 * 365 * 24 * 60


def latency_summary(seconds: Sequence[float]) -> dict[str, float | int]:
    """Count, p50/p95/p99, mean and max of latencies given in seconds, reported in ms."""
    if not seconds:
        return {"count": 0}
    ms = [1000 * s for s in seconds]
    return {"count": len(ms), "p50_ms": round(percentile(ms, 50), 1),
            "p95_ms": round(percentile(ms, 95), 1), "p99_ms": round(percentile(ms, 99), 1),
            "mean_ms": round(sum(ms) / len(ms), 1), "max_ms": round(max(ms), 1)}


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table; None shows as '-', floats without trailing noise."""
    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def open_loop_schedule(count: int, rate: float) -> list[float]:
    """Send offsets (seconds from the start) of ``count`` requests at a fixed ``rate`` per
    second: the open loop, where a slow answer never delays the next request."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    return [i / rate for i in range(count)]


def positive(text: str) -> float:
    """argparse type: a number above zero."""
    value = float(text)
    if value <= 0:
        raise ValueError(f"{text} is not above zero")
    return value


@dataclass
class LoadSampler:
    """The 1-minute load average, sampled over a run (the machine may be shared)."""

    samples: list[float]

    @classmethod
    def start(cls) -> LoadSampler:
        return cls([os.getloadavg()[0]])

    def sample(self) -> None:
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict[str, float]:
        self.sample()
        return {"min": round(min(self.samples), 2), "max": round(max(self.samples), 2)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc); 0 once it has gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_named(command: str) -> list[int]:
    """Processes whose command name is ``command`` (e.g. every PostgreSQL backend)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == command:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@dataclass
class CpuMeter:
    """CPU seconds spent by named groups of processes between start() and ms_per(): where the
    time of a whole-system run goes, and so what rate the machine's cores allow. A group is a
    list of pids or a command name (all its processes, e.g. PostgreSQL's backends; one that
    exits meanwhile takes its time with it, so the figure is a floor)."""

    groups: dict[str, list[int] | str]
    before: dict[str, dict[int, float]]

    @staticmethod
    def _measure(group: list[int] | str) -> dict[int, float]:
        pids = pids_named(group) if isinstance(group, str) else group
        return {pid: cpu_seconds(pid) for pid in pids}

    @classmethod
    def start(cls, groups: dict[str, list[int] | str]) -> CpuMeter:
        return cls(groups, {name: cls._measure(g) for name, g in groups.items()})

    def _spent(self, name: str) -> float:
        """Each process's time since start (all of it for one started since); a process gone
        meanwhile counts nothing, rather than taking its earlier time off the group's."""
        before = self.before[name]
        return sum(max(0.0, now - before.get(pid, 0.0))
                   for pid, now in self._measure(self.groups[name]).items() if now)

    def ms_per(self, count: int) -> dict[str, float]:
        """CPU ms per unit of work by group, their total, and the rate the cores allow."""
        spent = {name: self._spent(name) for name in self.groups}
        per = {name: round(1000 * s / max(count, 1), 2) for name, s in spent.items()}
        total = sum(spent.values())
        per["total"] = round(1000 * total / max(count, 1), 2)
        cores = os.cpu_count() or 1
        per["cores_allow_per_s"] = round(cores * count / total, 1) if total > 0 else 0.0
        return per


def machine() -> dict[str, Any]:
    """What ran the benchmark: CPU model and count, memory, Python, PostgreSQL's version."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text()
                      .splitlines() if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem_kb = 0
    info: dict[str, Any] = {"cpu": model, "cores": os.cpu_count(),
                            "memory_gb": round(mem_kb / 1024 / 1024, 1),
                            "python": platform.python_version(), "os": platform.platform(),
                            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        import psycopg

        with psycopg.connect(dbname="postgres", connect_timeout=5, **PG) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            info["postgresql"] = row[0] if row else None
    except Exception:  # noqa: BLE001 - the description is best effort
        info["postgresql"] = None
    return info


# Processes ---------------------------------------------------------------------------------------
def fresh_database(prefix: str) -> str:
    """Create an empty PostgreSQL database named <prefix>_<random>; returns its name."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def database_activity(name: str) -> dict[str, int]:
    """Counters of database ``name`` from PostgreSQL's statistics: its commits, and per schema
    (one per service) the table scans (about one per query that reads) and rows inserted.
    Backends report their counts within a second or so of their transactions."""
    import psycopg

    with psycopg.connect(dbname=name, autocommit=True, **PG) as conn:
        counts = {"commits": int(conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()[0])}  # type: ignore[index]
        for schema, scans, inserted in conn.execute(
                "SELECT schemaname, sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)),"
                " sum(n_tup_ins) FROM pg_stat_user_tables GROUP BY schemaname"):
            counts[f"{schema} scans"] = int(scans)
            counts[f"{schema} rows inserted"] = int(inserted)
    return counts


def per_unit(before: dict[str, int], after: dict[str, int], count: int) -> dict[str, float]:
    """How much each counter grew per unit of work."""
    return {k: round((after[k] - before.get(k, 0)) / max(count, 1), 1) for k in after}


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def admin_headers(data_dir: Path) -> dict[str, str]:
    """A bearer token every process sharing ``data_dir`` accepts (local auth mode). Calling it
    before the services start also makes the signing key once, so they do not race for it."""
    from services.runtime.auth import Principal, auth_from_settings
    from services.runtime.settings import SharedSettings

    auth = auth_from_settings(SharedSettings(data_dir=data_dir, auth_mode="local"))
    assert auth.issuer is not None
    token = auth.issuer.issue(Principal(subject="bench", role="admin"), ttl_s=6 * 3600)
    return {"authorization": f"Bearer {token}"}


def prepare_data_dir(data_dir: Path) -> None:
    """Make the data directory's cipher and signing keys once, before several processes start."""
    from services.runtime.cipher import cipher_key
    from services.runtime.settings import SharedSettings

    data_dir.mkdir(parents=True, exist_ok=True)
    cipher_key(SharedSettings(data_dir=data_dir))
    admin_headers(data_dir)


@dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_service(name: str, data_dir: Path, dbname: str, bootstrap: str | None,
                  extra_env: dict[str, str] | None = None) -> ServiceProcess:
    """`homecare up --services <name> --store postgres` in its own process (its own schema in
    ``dbname``), against the broker at ``bootstrap``; returns once it is started (not ready)."""
    from services.runtime.broker import free_port

    port = free_port()
    env = {**os.environ, "HOMECARE_STORE": "postgres", "HOMECARE_LOG_LEVEL": "WARNING",
           "HOMECARE_POSTGRES_DBNAME": dbname, "HOMECARE_DATA_DIR": str(data_dir),
           **(extra_env or {})}
    if bootstrap:
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    log_path = data_dir / f"{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--services", name, "--port", str(port),
         "--no-demo-data", "--store", "postgres", "--data-dir", str(data_dir)],
        env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    return ServiceProcess(name, process, f"http://127.0.0.1:{port}", log_path)


def wait_ready(services: Iterable[ServiceProcess], timeout_s: float = 180) -> None:
    """Until every service answers /readyz with 200 (its store and the broker reachable)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    for service in services:
        while True:
            try:
                if httpx.get(f"{service.base_url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if service.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{service.name} did not get ready:\n"
                                   + service.log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.3)


def rss_kb(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in kB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out
