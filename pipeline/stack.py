"""The local stack: Kafka (KRaft), PostgreSQL and the TimescaleDB test tier (PGlite).

Used by the demo and the integration tests. No Docker: every component is a real process
started from the machine's packages (ARCHITECTURE.md, "Real components and how they start").

    python -m pipeline.stack up [--timescale]     start what is not running (idempotent)
    python -m pipeline.stack status               one line per component
    python -m pipeline.stack down                 stop what `up` started
    python -m pipeline.stack prepare              fetch jars / node_modules only (setup.sh)
    python -m pipeline.stack env                  connection settings as shell exports
    python -m pipeline.stack clean                `down`, then delete the state directory

All state lives in ONE directory, ``<repo>/.stack/`` by default (``ROADSENSE_STACK_DIR``
overrides it)::

    .stack/
      lock                   flock held by up/down/clean
      password               dev password of the PostgreSQL user `roadsense` (generated once)
      kafka/libs/            broker jars (mvn -f stack/kafka/pom.xml dependency:copy-dependencies)
      kafka/cluster-id       KRaft cluster id (generated once)
      kafka/server.properties, log4j.properties   rendered on every `up`
      kafka/data/            log.dirs (formatted once by kafka.tools.StorageTool)
      kafka/kafka.pid, kafka/kafka.out, kafka/logs/server.log
      pg/                    owned by the `postgres` OS user when run as root:
        data/, run/ (unix socket), postgresql.log
      pglite/pglite.pid, pglite/pglite.log

``.stack/pg`` is a symlink to ``/var/tmp/roadsense-pg-<hash>`` when the postgres OS user
cannot traverse the stack directory's parents (e.g. a clone under ``/root``).

Ports (127.0.0.1 only), overridable by environment variables:

=====================  =======  =========================
component              default  variable
=====================  =======  =========================
Kafka broker           19092    ``ROADSENSE_KAFKA_PORT``
Kafka controller       19093    ``ROADSENSE_KAFKA_CONTROLLER_PORT``
PostgreSQL             15432    ``ROADSENSE_PG_PORT``
PGlite (TimescaleDB)   15433    ``ROADSENSE_PGLITE_PORT``
=====================  =======  =========================

Other variables: ``ROADSENSE_KAFKA_HEAP`` (JVM heap options, default ``-Xmx512m -Xms128m``),
``ROADSENSE_KAFKA_AUTO_CREATE_TOPICS`` (``true``/``false``, default ``true``; read at broker
start), ``ROADSENSE_PGLITE_DB`` (PGlite data dir, default in-memory ``memory://``).

Errors raise ``StackError`` (``pipeline.exceptions``: a ``RoadsenseError`` and a
``RuntimeError``) with what to do and the component's log tail.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg

from pipeline.exceptions import StackError  # RoadsenseError + RuntimeError; re-exported here

__all__ = [
    "ComponentStatus",
    "ConnectionInfo",
    "StackError",
    "clean",
    "connection_info",
    "down",
    "main",
    "pglite_down",
    "pglite_up",
    "prepare",
    "stack_dir",
    "status",
    "up",
]

log = logging.getLogger("roadsense.stack")

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_POM = REPO_ROOT / "stack" / "kafka" / "pom.xml"
KAFKA_PROPERTIES_TEMPLATE = REPO_ROOT / "stack" / "kafka" / "server.properties.template"
PGLITE_DIR = REPO_ROOT / "stack" / "pglite"

KAFKA_VERSION = "3.9.1"
KAFKA_MARKER_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"
HOST = "127.0.0.1"
PG_USER = "roadsense"
PG_DATABASE = "roadsense"
PGLITE_USER = "postgres"
PGLITE_DATABASE = "postgres"

DEFAULT_KAFKA_PORT = 19092
DEFAULT_KAFKA_CONTROLLER_PORT = 19093
DEFAULT_PG_PORT = 15432
DEFAULT_PGLITE_PORT = 15433
DEFAULT_KAFKA_HEAP = "-Xmx512m -Xms128m"

KAFKA_START_TIMEOUT_S = 90.0
PG_START_TIMEOUT_S = 60.0
PGLITE_START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
EXEC_TIMEOUT_S = 10.0  # a spawned program gets its argument list (see _wait_exec_done)


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------


def stack_dir() -> Path:
    """The directory holding all local-stack state (``ROADSENSE_STACK_DIR`` or ``.stack/``)."""
    env = os.environ.get("ROADSENSE_STACK_DIR")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / ".stack"


def _port(var: str, default: int) -> int:
    raw = os.environ.get(var)
    if raw is None or raw == "":
        return default
    try:
        port = int(raw)
    except ValueError:
        raise StackError(f"{var}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise StackError(f"{var}={port} is not a port number (1-65535)")
    return port


def kafka_port() -> int:
    return _port("ROADSENSE_KAFKA_PORT", DEFAULT_KAFKA_PORT)


def kafka_controller_port() -> int:
    return _port("ROADSENSE_KAFKA_CONTROLLER_PORT", DEFAULT_KAFKA_CONTROLLER_PORT)


def pg_port() -> int:
    return _port("ROADSENSE_PG_PORT", DEFAULT_PG_PORT)


def pglite_port() -> int:
    return _port("ROADSENSE_PGLITE_PORT", DEFAULT_PGLITE_PORT)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConnectionInfo:
    """Where the local stack listens. ``pg_dsn`` carries the dev password."""

    kafka_bootstrap: str
    pg_dsn: str
    pglite_dsn: str

    def __repr__(self) -> str:  # keep the password out of logs and tracebacks
        return (
            f"ConnectionInfo(kafka_bootstrap={self.kafka_bootstrap!r}, "
            f"pg_dsn={_hide_password(self.pg_dsn)!r}, "
            f"pglite_dsn={_hide_password(self.pglite_dsn)!r})"
        )


def _hide_password(dsn: str) -> str:
    scheme, sep, rest = dsn.partition("://")
    creds, at, hostpart = rest.partition("@")
    if not at or ":" not in creds:
        return dsn
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{hostpart}"


def _password() -> str:
    """The dev password, generated once and kept in the stack directory (mode 0600)."""
    path = stack_dir() / "password"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    pw = secrets.token_urlsafe(18)  # URL-safe: no quoting needed inside a DSN
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pw + "\n")
    return pw


def connection_info() -> ConnectionInfo:
    """Connection strings for the local stack (whether or not it is running)."""
    pw = _password()
    return ConnectionInfo(
        kafka_bootstrap=f"{HOST}:{kafka_port()}",
        pg_dsn=f"postgresql://{PG_USER}:{pw}@{HOST}:{pg_port()}/{PG_DATABASE}",
        # PGlite accepts any password but requires one; it has no TLS.
        pglite_dsn=(
            f"postgresql://{PGLITE_USER}:{pw}@{HOST}:{pglite_port()}/{PGLITE_DATABASE}"
            "?sslmode=disable"
        ),
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ComponentStatus:
    name: str
    running: bool
    address: str
    pid: int | None = None
    detail: str = ""

    def line(self) -> str:
        state = "running" if self.running else "stopped"
        pid = f" pid {self.pid}" if self.pid else ""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.name:<10} {state:<8} {self.address}{pid}{detail}"


# --------------------------------------------------------------------------------------
# Processes, ports, files
# --------------------------------------------------------------------------------------


def _require(binary: str, install_hint: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise StackError(f"`{binary}` not found on PATH; install it: {install_hint}")
    return path


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def _proc_state(pid: int) -> tuple[str, str] | None:
    """(state letter, command line with spaces) of `pid` from /proc, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat.rsplit(")", 1)[-1].split()[0], cmdline


def _pid_alive(pid: int, marker: str) -> bool:
    """True if `pid` runs, is not a zombie, and its command line contains `marker`.

    The marker guards against a recycled pid. Zombies count as dead: the detached
    processes are re-parented to PID 1, which may not reap them in a container.
    """
    ps = _proc_state(pid)
    return ps is not None and ps[0] not in ("Z", "X") and marker in ps[1]


def _wait_exec_done(pid: int, timeout_s: float = EXEC_TIMEOUT_S) -> None:
    """Return once `pid` has an argument list, or is gone, or after `timeout_s`.

    ``Popen`` returns as soon as the exec is past its point of no return, but the kernel
    sets the new program's arguments only after it has loaded its image: /proc/PID/cmdline
    reads empty meanwhile (about 15 ms for node here, longer from a cold page cache), and
    ``_pid_alive`` would call a server that is still starting dead. It did once, on a new
    machine: the caller reported pglite "exited during startup" and left it running.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ps = _proc_state(pid)
        if ps is None or ps[0] in ("Z", "X") or ps[1]:
            return
        time.sleep(0.005)


def _read_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in `pid_file` if that process is alive and ours, else None."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid, marker) else None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _port_accepts(port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _check_ports_free(component: str, ports: dict[str, int]) -> None:
    for var, port in ports.items():
        if not _port_free(port):
            raise StackError(
                f"{component}: port {HOST}:{port} is already in use by another process "
                f"(not one this stack started). Stop that process, or choose another port "
                f"with {var}=<port>."
            )


_LAUNCHER = """
import subprocess, sys
cwd, log_path, *cmd = sys.argv[1:]
with open(log_path, "ab", buffering=0) as log:
    p = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True)
print(p.pid, flush=True)
"""


def _spawn_detached(cmd: Sequence[str], *, cwd: Path, log_path: Path, pid_file: Path) -> int:
    """Start `cmd` in its own session, re-parented away from this process.

    A short-lived launcher starts it and exits, so the server is never our child: no
    zombie, no ``ResourceWarning`` from a live ``Popen`` at interpreter exit (pytest
    runs with ``-W error``), and Ctrl-C in the calling terminal does not reach it.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(cwd), str(log_path), *cmd],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if out.returncode != 0 or not out.stdout.strip().isdigit():
        raise StackError(f"could not launch {cmd[0]}: {out.stderr.strip() or out.stdout}")
    pid = int(out.stdout.strip())
    pid_file.write_text(f"{pid}\n")
    _wait_exec_done(pid)
    return pid


def _stop_pid(pid_file: Path, marker: str, name: str, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM the process in `pid_file`, SIGKILL after `timeout_s`. True if one was stopped."""
    pid = _read_pid(pid_file, marker)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    log.info("%s: stopping pid %d", name, pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _pid_alive(pid, marker):
            break
        time.sleep(0.2)
    else:
        log.warning("%s: pid %d still alive after %.0f s, sending SIGKILL", name, pid, timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        for _ in range(50):
            if not _pid_alive(pid, marker):
                break
            time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def _locked() -> Iterator[Path]:
    """Serialise up/down/clean across processes (e.g. two pytest runs)."""
    root = stack_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield root
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


# --------------------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------------------


def _kafka_dir() -> Path:
    return stack_dir() / "kafka"


def _kafka_marker() -> str:
    # Identifies our broker in /proc/<pid>/cmdline: the main class and our properties file.
    return str(_kafka_dir() / "server.properties")


def _java() -> str:
    return _require("java", "apt-get install -y default-jre-headless  (Java 11+; 17 tested)")


def _ensure_kafka_jars() -> Path:
    """Fetch the broker jars into ``.stack/kafka/libs`` unless the pom is unchanged."""
    libs = _kafka_dir() / "libs"
    stamp = libs / ".pom.sha256"
    pom_hash = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()
    if (libs / KAFKA_MARKER_JAR).exists() and stamp.exists() and stamp.read_text() == pom_hash:
        return libs
    mvn = _require("mvn", "apt-get install -y maven")
    tmp = _kafka_dir() / "libs.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("kafka: fetching the Kafka %s jars with Maven (first run only)", KAFKA_VERSION)
    t0 = time.monotonic()
    out = subprocess.run(
        [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(KAFKA_POM),
         "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if out.returncode != 0 or not (tmp / KAFKA_MARKER_JAR).exists():
        raise StackError(
            f"kafka: `mvn dependency:copy-dependencies` failed (exit {out.returncode}); "
            f"Maven Central must be reachable.\n{(out.stdout + out.stderr)[-3000:]}"
        )
    (tmp / ".pom.sha256").write_text(pom_hash)
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    log.info("kafka: %d jars in %s (%.1f s)", len(list(libs.glob("*.jar"))), libs,
             time.monotonic() - t0)  # fmt: skip
    return libs


def _kafka_cluster_id() -> str:
    path = _kafka_dir() / "cluster-id"
    if path.exists():
        return path.read_text().strip()
    cid = _new_cluster_id()
    path.write_text(cid + "\n")
    return cid


def _new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding. Like Kafka's
    ``Uuid.randomUuid``, never one starting with "-" (one in 64 would), which a command
    line reads as an option."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


_LOG4J = """\
# Rendered by pipeline/stack.py. Broker logs go to ${kafka.logs.dir}/server.log.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=${kafka.logs.dir}/server.log
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=3
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.clients.NetworkClient=WARN
"""


def _kafka_auto_create() -> str:
    raw = os.environ.get("ROADSENSE_KAFKA_AUTO_CREATE_TOPICS", "true").strip().lower()
    if raw not in ("true", "false"):
        raise StackError(f"ROADSENSE_KAFKA_AUTO_CREATE_TOPICS={raw!r}: use true or false")
    return raw


def _kafka_configure() -> Path:
    kdir = _kafka_dir()
    props = string.Template(KAFKA_PROPERTIES_TEMPLATE.read_text()).substitute(
        kafka_port=kafka_port(),
        controller_port=kafka_controller_port(),
        log_dirs=kdir / "data",
        auto_create_topics=_kafka_auto_create(),
    )
    _write_if_changed(kdir / "server.properties", props)
    _write_if_changed(kdir / "log4j.properties", _LOG4J)
    (kdir / "logs").mkdir(exist_ok=True)
    return kdir / "server.properties"


def _kafka_jvm_props() -> list[str]:
    kdir = _kafka_dir()
    return [
        f"-Dlog4j.configuration=file:{kdir / 'log4j.properties'}",
        f"-Dkafka.logs.dir={kdir / 'logs'}",
        "-Djava.awt.headless=true",
    ]


def _kafka_format(java: str, libs: Path, props: Path) -> None:
    data = _kafka_dir() / "data"
    if (data / "meta.properties").exists():
        return
    log.info("kafka: formatting the KRaft storage in %s", data)
    out = subprocess.run(
        [java, "-Xmx256m", *_kafka_jvm_props(), "-cp", f"{libs}/*", "kafka.tools.StorageTool",
         "format", f"--cluster-id={_kafka_cluster_id()}", "-c", str(props), "--ignore-formatted"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise StackError(
            f"kafka: storage format failed (exit {out.returncode}):\n"
            f"{(out.stdout + out.stderr)[-3000:]}"
        )


def _kafka_ready(bootstrap: str, timeout_s: float) -> bool:
    """True once the broker answers a metadata request listing itself."""
    with warnings.catch_warnings():
        # kafka-python 3.0.12 calls the deprecated importlib.resources.read_text while
        # importing; with pytest's `-W error` that import would fail.
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaAdminClient  # lazy: only needed while starting
        from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="roadsense-stack",
            request_timeout_ms=int(timeout_s * 1000),
        )
    except KafkaError:
        return False
    try:
        cluster = admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except KafkaError:
        return False
    finally:
        admin.close()


def kafka_up(timeout_s: float = KAFKA_START_TIMEOUT_S) -> None:
    kdir = _kafka_dir()
    kdir.mkdir(parents=True, exist_ok=True)
    pid_file = kdir / "kafka.pid"
    bootstrap = f"{HOST}:{kafka_port()}"
    pid = _read_pid(pid_file, _kafka_marker())
    if pid is not None:
        if not _port_accepts(kafka_port()):
            raise StackError(
                f"kafka: our broker (pid {pid}) runs but does not accept on {bootstrap}; "
                f"was ROADSENSE_KAFKA_PORT changed? Run `down` first.\n"
                f"{_tail(kdir / 'logs' / 'server.log')}"
            )
        log.info("kafka: already running on %s (pid %d)", bootstrap, pid)
        return
    java = _java()
    _check_ports_free(
        "kafka",
        {"ROADSENSE_KAFKA_PORT": kafka_port(),
         "ROADSENSE_KAFKA_CONTROLLER_PORT": kafka_controller_port()},
    )  # fmt: skip
    libs = _ensure_kafka_jars()
    props = _kafka_configure()
    _kafka_format(java, libs, props)
    heap = os.environ.get("ROADSENSE_KAFKA_HEAP", DEFAULT_KAFKA_HEAP).split()
    cmd = [java, *heap, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
           "-XX:+ExitOnOutOfMemoryError", *_kafka_jvm_props(),
           "-cp", f"{libs}/*", "kafka.Kafka", str(props)]  # fmt: skip
    t0 = time.monotonic()
    pid = _spawn_detached(cmd, cwd=kdir, log_path=kdir / "kafka.out", pid_file=pid_file)
    log.info("kafka: started pid %d, waiting for %s", pid, bootstrap)
    deadline = t0 + timeout_s
    while True:
        if not _pid_alive(pid, _kafka_marker()):
            pid_file.unlink(missing_ok=True)
            raise StackError(
                f"kafka: the broker exited during startup. kafka.out:\n"
                f"{_tail(kdir / 'kafka.out', 20)}\nserver.log:\n"
                f"{_tail(kdir / 'logs' / 'server.log')}"
            )
        if _port_accepts(kafka_port()) and _kafka_ready(bootstrap, timeout_s=5.0):
            break
        if time.monotonic() > deadline:
            raise StackError(
                f"kafka: no answer on {bootstrap} after {timeout_s:.0f} s (pid {pid} left "
                f"running; `down` stops it). server.log:\n{_tail(kdir / 'logs' / 'server.log')}"
            )
        time.sleep(0.5)
    log.info("kafka: ready on %s (%.1f s)", bootstrap, time.monotonic() - t0)


def kafka_down() -> None:
    if not _stop_pid(_kafka_dir() / "kafka.pid", _kafka_marker(), "kafka"):
        log.info("kafka: not running")


def kafka_status() -> ComponentStatus:
    pid = _read_pid(_kafka_dir() / "kafka.pid", _kafka_marker())
    return ComponentStatus(
        name="kafka", running=pid is not None, address=f"{HOST}:{kafka_port()}", pid=pid,
        detail=f"Apache Kafka {KAFKA_VERSION} KRaft, controller :{kafka_controller_port()}",
    )  # fmt: skip


# --------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------

_PG_INSTALL_HINT = "apt-get install -y postgresql  (Debian's packages; scripts/setup.sh does it)"


def _pg_bindir() -> Path:
    env = os.environ.get("ROADSENSE_PG_BINDIR")
    if env:
        candidates = [Path(env)]
    else:
        found = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/initdb"),
            key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        )
        candidates = [p.parent for p in reversed(found)]
        initdb = shutil.which("initdb")
        if initdb:
            candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise StackError(f"PostgreSQL server binaries (initdb, pg_ctl) not found; {_PG_INSTALL_HINT}")


def _pg_os_user() -> pwd.struct_passwd | None:
    """The OS user that runs PostgreSQL: `postgres` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise StackError(
            f"running as root, but there is no `postgres` OS user to run the server as "
            f"(PostgreSQL refuses to run as root); {_PG_INSTALL_HINT}"
        ) from None


def _as_pg_user(cmd: Sequence[str]) -> list[str]:
    user = _pg_os_user()
    if user is None:
        return list(cmd)
    runuser = _require("runuser", "apt-get install -y util-linux")
    return [runuser, "-u", user.pw_name, "--", *cmd]


def _traversable_by(path: Path, user: pwd.struct_passwd) -> Path | None:
    """The first directory from / to `path` that `user` cannot enter, or None."""
    groups = {g for g in os.getgrouplist(user.pw_name, user.pw_gid)}
    for d in [*reversed(path.parents), path]:
        try:
            st = d.stat()
        except FileNotFoundError:
            break  # will be created by us, with the right owner
        if st.st_uid == user.pw_uid:
            ok = bool(st.st_mode & 0o100)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & 0o010)
        else:
            ok = bool(st.st_mode & 0o001)
        if not ok:
            return d
    return None


def _pg_root() -> Path:
    """The directory holding the cluster (data/, run/, log), created and owned right.

    Normally ``.stack/pg``. If the postgres OS user cannot traverse the stack directory's
    parents (root's home is 0700), the cluster lives in ``/var/tmp/roadsense-pg-<hash>`` and
    ``.stack/pg`` is a symlink to it, so the stack directory still finds everything.
    """
    link = stack_dir() / "pg"
    if link.is_symlink():
        return link.resolve()
    user = _pg_os_user()
    if user is not None and not link.exists():
        blocked = _traversable_by(stack_dir(), user)
        if blocked is not None:
            digest = hashlib.sha256(str(stack_dir()).encode()).hexdigest()[:10]
            outside = Path("/var/tmp") / f"roadsense-pg-{digest}"
            log.warning(
                "postgres: the `postgres` user cannot enter %s; keeping the cluster in %s "
                "(symlinked from %s)", blocked, outside, link,
            )  # fmt: skip
            outside.mkdir(mode=0o700, exist_ok=True)
            os.chown(outside, user.pw_uid, user.pw_gid)
            link.symlink_to(outside)
            return outside
    link.mkdir(mode=0o700, exist_ok=True)
    if user is not None:
        blocked = _traversable_by(link, user)
        if blocked is not None and blocked != link:
            raise StackError(
                f"postgres: the `postgres` OS user cannot enter {blocked}, which holds the "
                f"cluster in {link}. Run `chmod o+x {blocked}`, or `clean` and set "
                f"ROADSENSE_STACK_DIR to a directory under /tmp or /var/tmp."
            )
        os.chown(link, user.pw_uid, user.pw_gid)
    return link


def _pg_run(cmd: Sequence[str], *, timeout_s: float, what: str) -> str:
    out = subprocess.run(
        _as_pg_user(cmd), capture_output=True, text=True, timeout=timeout_s, check=False,
        cwd="/", start_new_session=True,
    )  # fmt: skip
    if out.returncode != 0:
        raise StackError(
            f"postgres: {what} failed (exit {out.returncode}):\n{(out.stdout + out.stderr)[-3000:]}"
        )
    return out.stdout


def _pg_running(bindir: Path, data: Path) -> int | None:
    """The postmaster pid if our cluster runs (pg_ctl status), else None."""
    if not (data / "postmaster.pid").exists():
        return None
    out = subprocess.run(
        _as_pg_user([str(bindir / "pg_ctl"), "status", "-D", str(data)]),
        capture_output=True, text=True, timeout=30, check=False, cwd="/",
    )  # fmt: skip
    if out.returncode != 0:
        return None
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    # pg_ctl's kill(pid, 0) check counts an unreaped (zombie) postmaster as running.
    return pid if _pid_alive(pid, "postgres") else None


def _pg_initdb(bindir: Path, root: Path) -> None:
    data = root / "data"
    if (data / "PG_VERSION").exists():
        return
    log.info("postgres: initdb %s (superuser %s, scram-sha-256)", data, PG_USER)
    user = _pg_os_user()
    pwfile = root / ".pwfile"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(_password() + "\n")
    if user is not None:
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    shutil.rmtree(data, ignore_errors=True)  # a half-done initdb leaves a partial dir
    try:
        # The owner is the bootstrap superuser, as POSTGRES_USER=roadsense makes it in the
        # timescale/timescaledb image that docker-compose.yml runs.
        _pg_run(
            [str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}",
             "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"],
            timeout_s=180, what="initdb",
        )  # fmt: skip
    finally:
        pwfile.unlink(missing_ok=True)
    with open(data / "postgresql.conf", "a") as f:
        f.write("\n# roadsense local stack: settings rendered on every `up`\n"
                "include_if_exists = 'roadsense.conf'\n")  # fmt: skip


def _pg_configure(root: Path) -> None:
    data = root / "data"
    conf = (
        "# Rendered by pipeline/stack.py on every `up`.\n"
        f"listen_addresses = '{HOST}'\n"
        f"port = {pg_port()}\n"
        f"unix_socket_directories = '{root / 'run'}'\n"
        "max_connections = 100\n"
        "shared_buffers = 128MB\n"
        "timezone = 'UTC'\n"
        "log_timezone = 'UTC'\n"
        "password_encryption = 'scram-sha-256'\n"
    )
    path = data / "roadsense.conf"
    _write_if_changed(path, conf)
    run = root / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    user = _pg_os_user()
    if user is not None:
        for p in (path, run):
            os.chown(p, user.pw_uid, user.pw_gid)


def _pg_connect_ok(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def _pg_admin_dsn() -> str:
    """The owner's login to the `postgres` maintenance database."""
    return connection_info().pg_dsn.rsplit("/", 1)[0] + "/postgres"


def _pg_ensure_database() -> None:
    with psycopg.connect(_pg_admin_dsn(), autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)
        ).fetchone()
        if not exists:
            log.info("postgres: creating database %s", PG_DATABASE)
            conn.execute(f'CREATE DATABASE "{PG_DATABASE}" OWNER "{PG_USER}"')


def pg_up(timeout_s: float = PG_START_TIMEOUT_S) -> None:
    bindir = _pg_bindir()
    root = _pg_root()
    data = root / "data"
    address = f"{HOST}:{pg_port()}"
    pid = _pg_running(bindir, data)
    if pid is not None:
        if not _pg_connect_ok(_pg_admin_dsn()):
            raise StackError(
                f"postgres: our cluster (pid {pid}) runs but {address} does not accept the "
                f"roadsense login; was ROADSENSE_PG_PORT changed? Run `down` first.\n"
                f"{_tail(root / 'postgresql.log')}"
            )
        _pg_ensure_database()
        log.info("postgres: already running on %s (pid %d)", address, pid)
        return
    _check_ports_free("postgres", {"ROADSENSE_PG_PORT": pg_port()})
    _pg_initdb(bindir, root)
    _pg_configure(root)
    t0 = time.monotonic()
    logfile = root / "postgresql.log"
    try:
        _pg_run(
            [str(bindir / "pg_ctl"), "start", "-D", str(data), "-l", str(logfile), "-w",
             "-t", str(int(timeout_s))],
            timeout_s=timeout_s + 10, what="pg_ctl start",
        )  # fmt: skip
    except StackError as exc:
        raise StackError(f"{exc}\npostgresql.log:\n{_tail(logfile)}") from None
    deadline = t0 + timeout_s
    while not _pg_connect_ok(_pg_admin_dsn()):
        if time.monotonic() > deadline:
            raise StackError(
                f"postgres: started but {address} refuses the roadsense login after "
                f"{timeout_s:.0f} s. postgresql.log:\n{_tail(logfile)}"
            )
        time.sleep(0.3)
    _pg_ensure_database()
    log.info("postgres: ready on %s (%.1f s)", address, time.monotonic() - t0)


def pg_down() -> None:
    link = stack_dir() / "pg"
    if not link.exists():
        log.info("postgres: not running")
        return
    bindir = _pg_bindir()
    data = link.resolve() / "data"
    if _pg_running(bindir, data) is None:
        log.info("postgres: not running")
        return
    log.info("postgres: pg_ctl stop -m fast")
    _pg_run([str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w", "-t", "60"],
            timeout_s=70, what="pg_ctl stop")  # fmt: skip


def pg_status() -> ComponentStatus:
    address = f"{HOST}:{pg_port()}"
    link = stack_dir() / "pg"
    pid = None
    detail = ""
    if link.exists():
        try:
            bindir = _pg_bindir()
        except StackError:
            detail = "binaries missing"
        else:
            pid = _pg_running(bindir, link.resolve() / "data")
            detail = f"PostgreSQL {bindir.parent.name}, db {PG_DATABASE}"
    return ComponentStatus(name="postgres", running=pid is not None, address=address, pid=pid,
                           detail=detail)  # fmt: skip


# --------------------------------------------------------------------------------------
# PGlite (TimescaleDB test tier)
# --------------------------------------------------------------------------------------


def _pglite_dir() -> Path:
    return stack_dir() / "pglite"


def _pglite_marker() -> str:
    return str(PGLITE_DIR / "server.mjs")


def _ensure_pglite_modules() -> None:
    """``npm ci`` in stack/pglite unless node_modules matches package-lock.json."""
    lock = json.loads((PGLITE_DIR / "package-lock.json").read_text())
    wanted = {
        name: meta.get("version")
        for name, meta in lock.get("packages", {}).items()
        if name.startswith("node_modules/")
    }
    try:
        ok = all(
            json.loads((PGLITE_DIR / name / "package.json").read_text()).get("version") == ver
            for name, ver in wanted.items()
        )
    except (OSError, ValueError):
        ok = False
    if ok:
        return
    npm = _require("npm", "apt-get install -y nodejs npm  (Node 20+)")
    log.info("pglite: npm ci in %s", PGLITE_DIR)
    out = subprocess.run(
        [npm, "ci", "--legacy-peer-deps", "--no-audit", "--no-fund"],
        cwd=PGLITE_DIR, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise StackError(
            f"pglite: `npm ci` failed in {PGLITE_DIR} (exit {out.returncode}); the npm "
            f"registry must be reachable.\n{(out.stdout + out.stderr)[-3000:]}"
        )


def _pglite_ready(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
            ).fetchone()
        return row is not None
    except psycopg.OperationalError:
        return False


def pglite_up(timeout_s: float = PGLITE_START_TIMEOUT_S) -> None:
    """Start the TimescaleDB test tier (PGlite) on 127.0.0.1:$ROADSENSE_PGLITE_PORT."""
    pdir = _pglite_dir()
    pdir.mkdir(parents=True, exist_ok=True)
    pid_file = pdir / "pglite.pid"
    address = f"{HOST}:{pglite_port()}"
    pid = _read_pid(pid_file, _pglite_marker())
    if pid is not None:
        if not _port_accepts(pglite_port()):
            raise StackError(
                f"pglite: our server (pid {pid}) runs but does not accept on {address}; "
                f"was ROADSENSE_PGLITE_PORT changed? Run `down` first."
            )
        log.info("pglite: already running on %s (pid %d)", address, pid)
        return
    node = _require("node", "apt-get install -y nodejs  (Node 20+)")
    _check_ports_free("pglite", {"ROADSENSE_PGLITE_PORT": pglite_port()})
    _ensure_pglite_modules()
    db = os.environ.get("ROADSENSE_PGLITE_DB", "memory://")
    cmd = [node, str(PGLITE_DIR / "server.mjs"), "--host", HOST,
           "--port", str(pglite_port()), "--db", db]  # fmt: skip
    t0 = time.monotonic()
    logfile = pdir / "pglite.log"
    pid = _spawn_detached(cmd, cwd=PGLITE_DIR, log_path=logfile, pid_file=pid_file)
    log.info("pglite: started pid %d, waiting for %s", pid, address)
    dsn = connection_info().pglite_dsn
    deadline = t0 + timeout_s
    while True:
        if not _pid_alive(pid, _pglite_marker()):
            pid_file.unlink(missing_ok=True)
            raise StackError(f"pglite: the server exited during startup:\n{_tail(logfile)}")
        if _port_accepts(pglite_port()) and _pglite_ready(dsn):
            break
        if time.monotonic() > deadline:
            raise StackError(
                f"pglite: no answer on {address} after {timeout_s:.0f} s (pid {pid} left "
                f"running; `down` stops it):\n{_tail(logfile)}"
            )
        time.sleep(0.5)
    log.info("pglite: ready on %s (%.1f s)", address, time.monotonic() - t0)


def pglite_down() -> None:
    if not _stop_pid(_pglite_dir() / "pglite.pid", _pglite_marker(), "pglite"):
        log.info("pglite: not running")


def pglite_status() -> ComponentStatus:
    pid = _read_pid(_pglite_dir() / "pglite.pid", _pglite_marker())
    return ComponentStatus(name="pglite", running=pid is not None,
                           address=f"{HOST}:{pglite_port()}", pid=pid,
                           detail="TimescaleDB test tier")  # fmt: skip


# --------------------------------------------------------------------------------------
# Whole stack
# --------------------------------------------------------------------------------------


def prepare(*, timescale_tier: bool = True) -> None:
    """Fetch what `up` needs (Kafka jars, PGlite node_modules) without starting anything."""
    with _locked():
        _java()
        _kafka_dir().mkdir(parents=True, exist_ok=True)
        _ensure_kafka_jars()
        _pg_bindir()
        if timescale_tier:
            _require("node", "apt-get install -y nodejs  (Node 20+)")
            _ensure_pglite_modules()


def up(*, timescale_tier: bool = False) -> ConnectionInfo:
    """Start Kafka and PostgreSQL (and PGlite if `timescale_tier`); idempotent.

    Returns the connection info. Raises StackError with the reason and the log tail.
    """
    t0 = time.monotonic()
    with _locked():
        kafka_up()
        pg_up()
        if timescale_tier:
            pglite_up()
    log.info("stack: up (%.1f s)", time.monotonic() - t0)
    return connection_info()


def down() -> None:
    """Stop what `up` started (PGlite, PostgreSQL, Kafka); a no-op for what is stopped."""
    with _locked():
        errors: list[str] = []
        for stop in (pglite_down, pg_down, kafka_down):
            try:
                stop()
            except StackError as exc:  # stop the others anyway
                errors.append(str(exc))
        if errors:
            raise StackError("\n".join(errors))


def status() -> list[ComponentStatus]:
    """The state of each component (no side effects beyond reading pid files)."""
    return [kafka_status(), pg_status(), pglite_status()]


def clean() -> None:
    """`down`, then delete the whole stack directory (jars, data, password)."""
    down()
    root = stack_dir()
    link = root / "pg"
    if link.is_symlink():
        shutil.rmtree(link.resolve(), ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    log.info("stack: removed %s", root)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.stack", description="The roadsense local stack."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start Kafka and PostgreSQL (idempotent)")
    p_up.add_argument("--timescale", action="store_true",
                      help="also start the TimescaleDB test tier (PGlite)")  # fmt: skip
    sub.add_parser("prepare", help="fetch the Kafka jars and PGlite node_modules only")
    sub.add_parser("down", help="stop what `up` started")
    sub.add_parser("status", help="show each component")
    sub.add_parser("env", help="print connection settings as shell exports")
    sub.add_parser("clean", help="`down`, then delete the stack directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # connection retries while starting
    try:
        if args.command == "up":
            info = up(timescale_tier=args.timescale)
            for s in status():
                print(s.line())
            print(f"kafka bootstrap: {info.kafka_bootstrap}")
            print(f"postgres dsn:    {_hide_password(info.pg_dsn)}  (password in "
                  f"{stack_dir() / 'password'})")  # fmt: skip
            if args.timescale:
                print(f"pglite dsn:      {_hide_password(info.pglite_dsn)}")
        elif args.command == "prepare":
            prepare()
        elif args.command == "down":
            down()
        elif args.command == "status":
            for s in status():
                print(s.line())
        elif args.command == "env":
            info = connection_info()
            print(f"export ROADSENSE_KAFKA_BOOTSTRAP={info.kafka_bootstrap}")
            print(f"export ROADSENSE_PG_DSN='{info.pg_dsn}'")
            print(f"export ROADSENSE_PGLITE_DSN='{info.pglite_dsn}'")
        elif args.command == "clean":
            clean()
    except StackError as exc:
        print(f"StackError: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
