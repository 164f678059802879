"""Single-node Apache Kafka 4.x (KRaft broker+controller) on 127.0.0.1, no Docker, secured.

The jars come from Maven Central through ``kafka_pom.xml`` (resolved once per home),
so the prerequisites are Java 17+ and, for the first start only, Maven.

Secure by default, as a shared cluster would be: clients connect with SASL/SCRAM-SHA-512 over
TLS (a local CA made on the first start), one SCRAM user per principal of the topic catalog plus
``admin``; the KRaft ``StandardAuthorizer`` denies whatever no ACL allows
(``allow.everyone.if.no.acl.found=false``), topics are never created on the fly, and the
controller listener takes only the broker's own certificate (mutual TLS). The ACLs themselves are
the fleet's, per topic prefix: ``modelfleet provision`` applies them (see
`modelfleet_common.acls`). ``--plaintext`` starts the old open broker instead, for experiments.

Files under ``<home>/kafka``: ``lib/`` (jars), ``data/`` (log.dirs), ``logs/``
(``server.log`` from log4j2, ``kafka.out`` = JVM stdout/stderr), ``server.properties`` (0600),
``log4j2.properties``, ``kafka.pid``, and ``tls/`` and ``credentials/`` (see `kafka_security`).
Reading them (is it running, secured; a principal's settings) is the CLI's:
`modelfleet_cli.local_home.kafka`, whose functions this module also offers.

CLI: ``python -m modelfleet_devkit.kafka start|stop|status [--home DIR]
[--port N] [--controller-port N] [--timeout S] [--plaintext]``.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Coroutine, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from modelfleet_cli.local_home import kafka as files
from modelfleet_cli.local_home.kafka import ADMIN, MODE_FILE, NAME, SCRAM_MECHANISM
from modelfleet_common.kafka import connection_options

from ._process import LaunchError, ManagedProcess, make_parser, progress, run_cli, tail
from .kafka_security import BROKER_CN, LocalSecurity

#: What a client of the local broker reads (`modelfleet_cli.local_home.kafka`), offered here too.
client_environment = files.client_environment
client_settings = files.client_settings
admin_settings = files.admin_settings
is_secured = files.is_secured
endpoint = files.endpoint
DEFAULT_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
MIN_JAVA = 17
POM_RESOURCE = "kafka_pom.xml"
# A cold ~/.m2 fetches ~45 MB of jars plus Maven's plugins: allow slow mirrors.
MAVEN_TIMEOUT = 1800.0
JVM_OPTS = (
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-Djava.awt.headless=true",
    # Kafka logs from its own shutdown hook; log4j2's hook racing it prints "Unable to
    # register Log4j shutdown hook because JVM is shutting down" on every stop.
    "-Dlog4j2.shutdownHookEnabled=false",
)


_root = files.root


def _process(root: Path) -> ManagedProcess:
    found = files.process(root)
    return ManagedProcess(found.name, found.root, found.marker)


def _pom_text() -> str:
    pom = resources.files(__package__).joinpath(POM_RESOURCE)
    return pom.read_text(encoding="utf-8")


def kafka_version() -> str:
    """Return the Kafka version pinned in the packaged ``kafka_pom.xml``."""
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*<", _pom_text())
    if match is None:
        raise LaunchError(f"no <kafka.version> in {POM_RESOURCE}")
    return match.group(1)


def find_java() -> str:
    """Return a ``java`` executable of version 17+ (``$JAVA_HOME``, then PATH)."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home, "bin", "java") if java_home else None
    java = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
    if java is None:
        raise LaunchError(
            f"Java {MIN_JAVA}+ is needed to run Kafka, but no `java` was found "
            "(set JAVA_HOME or install one, e.g. `apt-get install openjdk-17-jdk`)"
        )
    try:
        out = subprocess.run([java, "-version"], check=False, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LaunchError(f"could not run `{java} -version`: {exc}") from exc
    # 'openjdk version "17.0.15" 2025-04-15', 'java version "1.8.0_392"', '"21-ea"'
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        raise LaunchError(f"could not read the Java version from `{java} -version`")
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise LaunchError(f"Kafka 4 needs Java {MIN_JAVA}+, but {java} is Java {major}")
    return java


def _ensure_jars(root: Path) -> Path:
    """Resolve the Kafka jars into ``root/lib`` unless that version is there."""
    version = kafka_version()
    lib = root / "lib"
    marker = lib / ".kafka-version"
    core_jar = f"kafka_2.13-{version}.jar"
    if marker.is_file() and marker.read_text().strip() == version and (lib / core_jar).is_file():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LaunchError(
            "Maven (`mvn`) is needed once to download the Kafka jars, but it is not "
            "on PATH (e.g. `apt-get install maven`)"
        )
    # mvn wants a pom file on disk and may write beside it: use a copy in the
    # (writable) home, not the installed package.
    pom = root / "pom.xml"
    pom.write_text(_pom_text(), encoding="utf-8")
    staging = root / "lib.partial"
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    progress(NAME, f"downloading Kafka {version} jars with Maven (first start only)")
    try:
        proc = subprocess.run(
            cmd,
            check=False,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=MAVEN_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise LaunchError(f"Maven did not finish within {MAVEN_TIMEOUT:.0f}s") from exc
    if proc.returncode != 0 or not (staging / core_jar).is_file():
        output = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise LaunchError(f"Maven could not resolve Kafka {version} (exit {proc.returncode})", output)
    (staging / ".kafka-version").write_text(f"{version}\n")
    # Swap in only a complete download, so an interrupted one is redone next time.
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    progress(NAME, f"{len(list(lib.glob('*.jar')))} jars in {lib}")
    return lib


def resolve_jars(home: Path) -> Path:
    """The directory holding the pinned Kafka version's jars for `home` (resolved with Maven the
    first time); `make compose-test` builds its Kafka image from them."""
    root = _root(home)
    root.mkdir(parents=True, exist_ok=True)
    return _ensure_jars(root)


def _listeners(root: Path, port: int, controller_port: int, secured: bool) -> str:
    if not secured:
        return f"""\
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
"""
    security = LocalSecurity(root)
    admin_password = security.password(ADMIN)
    return f"""\
# Clients: SASL/SCRAM over TLS. Controller: mutual TLS with the broker's own certificate.
listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=SASL_SSL://127.0.0.1:{port}
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms={SCRAM_MECHANISM}
sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\
  org.apache.kafka.common.security.scram.ScramLoginModule \
  required username="{ADMIN}" password="{admin_password}";
ssl.keystore.type=PEM
ssl.keystore.location={security.broker_pem.as_posix()}
ssl.truststore.type=PEM
ssl.truststore.location={security.ca_file.as_posix()}
listener.name.controller.ssl.client.auth=required
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:{ADMIN};User:CN={BROKER_CN}
"""


def _server_properties(root: Path, port: int, controller_port: int, secured: bool = True) -> str:
    return f"""\
# Written by modelfleet_devkit.kafka on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
# Kafka 4 dynamic quorum (KIP-853), paired with `StorageTool format --standalone`.
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
{_listeners(root, port, controller_port, secured)}controller.listener.names=CONTROLLER
log.dirs={(root / "data").as_posix()}
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# The defaults (50 partitions each) make the first consumer group / transaction on a
# fresh single-node broker wait for 50 partitions to be created.
offsets.topic.num.partitions=3
transaction.state.log.num.partitions=3
group.initial.rebalance.delay.ms=0
# Topics are provisioned with their settings (compaction) by the fleet's admin, never on the fly.
auto.create.topics.enable={"false" if secured else "true"}
"""


def _log4j2_properties(root: Path) -> str:
    logs = (root / "logs").as_posix()
    return f"""\
# Written by modelfleet_devkit.kafka: INFO to server.log, chatty loggers quieted.
status = warn
name = modelfleet-local-kafka
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {logs}/server.log
appender.file.filePattern = {logs}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
# Hundreds of lines of "... values:" dumps for every config object.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.requestchannel.name = kafka.network.RequestChannel$
logger.requestchannel.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
"""


def _new_cluster_id() -> str:
    """Return a random cluster id like `kafka-storage random-uuid` (base64url UUID)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # As Kafka's Uuid.randomUuid(): a leading "-" would parse as a CLI flag.
        if not cid.startswith("-"):
            return cid


def _java_cmd(java: str, root: Path, *args: str) -> list[str]:
    return [
        java,
        *JVM_OPTS,
        f"-Dlog4j2.configurationFile={root / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={root / 'logs'}",
        "-cp",
        # The JVM itself expands "dir/*" to all jars in dir.
        f"{root / 'lib'}{os.sep}*",
        *args,
    ]


def _format_storage(root: Path, java: str, secured: bool) -> None:
    """Format ``data/`` for KRaft once: new cluster id, single-node dynamic quorum, SCRAM users.

    Storage formatted for the other mode (or before this home had credentials) is formatted anew:
    SCRAM users can only be created by the format, and a local broker's data is disposable.
    """
    data = root / "data"
    mode = "sasl_ssl" if secured else "plaintext"
    if (data / "meta.properties").is_file():
        marker = data / MODE_FILE
        if marker.is_file() and marker.read_text().strip() == mode:
            return
        progress(NAME, f"formatting the storage anew: it was not made for a {mode} broker")
        shutil.rmtree(data)
    progress(NAME, "formatting KRaft storage" + (" with a SCRAM user per principal" if secured else ""))
    cmd = _java_cmd(
        java,
        root,
        # Still in kafka_2.13 (core) in Kafka 4.x, like kafka.Kafka itself.
        "kafka.tools.StorageTool",
        "format",
        "--config",
        str(root / "server.properties"),
        "--cluster-id",
        _new_cluster_id(),
        "--standalone",
        *(LocalSecurity(root).scram_arguments() if secured else ()),
    )
    proc = subprocess.run(cmd, check=False, cwd=root, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        log_tail = tail(root / "logs" / "server.log")
        # The arguments hold passwords: report the tool's output, never the command.
        raise LaunchError(
            f"formatting Kafka storage failed (exit {proc.returncode})",
            f"{proc.stdout}\n{proc.stderr}\n{log_tail}",
        )
    (data / MODE_FILE).write_text(mode + "\n")


def _prepare(root: Path, port: int, controller_port: int, secured: bool) -> tuple[list[str], None]:
    java = find_java()
    _ensure_jars(root)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    (root / "log4j2.properties").write_text(_log4j2_properties(root))
    security = LocalSecurity(root)
    if secured and not security.is_complete():
        security.ensure()
        # New passwords: storage formatted before them has other SCRAM users.
        (root / "data" / MODE_FILE).unlink(missing_ok=True)
    props = root / "server.properties"
    # It holds the admin's password (the broker's own inter-broker login).
    props.touch(mode=0o600)
    props.chmod(0o600)
    props.write_text(_server_properties(root, port, controller_port, secured))
    _format_storage(root, java, secured)
    return _java_cmd(java, root, "kafka.Kafka", str(props)), None


def start(
    home: Path,
    port: int = DEFAULT_PORT,
    controller_port: int = DEFAULT_CONTROLLER_PORT,
    timeout: float = 120,
    *,
    plaintext: bool = False,
) -> str:
    """Start the broker unless it runs; return its bootstrap ``127.0.0.1:<port>``.

    ``home`` is the local-services root; Kafka keeps its files in ``home/kafka``. Secured
    (SASL_SSL, ACLs) unless ``plaintext``. Blocks until the broker answers a DescribeCluster
    request. Raises RuntimeError (LaunchError) quoting the broker log if it dies or is not
    ready in ``timeout`` s.
    """
    root = _root(home)
    return _process(root).start(
        endpoint=f"127.0.0.1:{port}",
        ports=(port, controller_port),
        probe=_probe(home, secured=not plaintext),
        prepare=lambda: _prepare(root, port, controller_port, secured=not plaintext),
        timeout=timeout,
        logs=(root / "logs" / "server.log",),
    )


def stop(home: Path) -> None:
    """Stop the broker started from ``home`` (SIGTERM, SIGKILL after 60 s)."""
    # Controlled shutdown usually takes a few seconds; give it room before SIGKILL.
    _process(_root(home)).stop(timeout=60.0)


def status(home: Path, port: int | None = None) -> tuple[bool, str]:
    """Return (answering, one-line description) of the broker of ``home``.

    ``port`` defaults to the one the broker was last started with.
    """
    endpoint = f"127.0.0.1:{port}" if port else None
    return _process(_root(home)).status(_probe(home, secured=is_secured(home)), endpoint)


def _probe(home: Path, *, secured: bool) -> Callable[[str, float], bool]:
    def probe(bootstrap: str, timeout: float) -> bool:
        if not secured:
            return is_ready(bootstrap, timeout)
        return is_ready(bootstrap, timeout, connection_options(admin_settings(home, bootstrap)))

    return probe


def is_ready(bootstrap: str, timeout: float = 5.0, options: dict[str, Any] | None = None) -> bool:
    """Return True if a Kafka broker at ``bootstrap`` answers DescribeCluster.

    ``options`` are aiokafka connection options (TLS, SASL); without them it connects in PLAINTEXT.
    """
    return _run_sync(_describe_cluster(bootstrap, timeout, options or {}))


# True while a readiness probe runs. Tasks that aiokafka spawns inherit it (contextvars),
# so the filter below drops only the probe's expected "Unable connect to ..." errors and
# leaves the application's own aiokafka logging alone.
_PROBING: contextvars.ContextVar[bool] = contextvars.ContextVar("probing", default=False)


class _DropWhileProbing(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _PROBING.get()


_PROBE_FILTER = _DropWhileProbing()


def _quiet_aiokafka_probes() -> None:
    # A logger's filters skip records propagated from child loggers: attach to each.
    for name in list(logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        if name.split(".")[0] == "aiokafka" and _PROBE_FILTER not in logger.filters:
            logger.addFilter(_PROBE_FILTER)


async def _describe_cluster(bootstrap: str, wait_s: float, options: dict[str, Any]) -> bool:
    _quiet_aiokafka_probes()
    _PROBING.set(True)
    admin = AIOKafkaAdminClient(
        **{"bootstrap_servers": bootstrap, **options},
        client_id="modelfleet-local-probe",
        request_timeout_ms=max(1000, int(wait_s * 1000)),
    )
    try:
        async with asyncio.timeout(wait_s):
            await admin.start()
            cluster = await admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except Exception:  # any failure means "not ready"
        return False
    finally:
        # Best effort: the probe may have failed half-way through start().
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5.0)


def _run_sync(coro: Coroutine[Any, Any, bool]) -> bool:
    """Run ``coro`` to completion, also when called inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``start|stop|status [--home DIR] [--port N] [--controller-port N]``."""
    parser = make_parser(NAME, DEFAULT_PORT)
    parser.add_argument(
        "--controller-port",
        type=int,
        default=DEFAULT_CONTROLLER_PORT,
        help=f"KRaft controller port (default: {DEFAULT_CONTROLLER_PORT})",
    )
    parser.add_argument(
        "--plaintext",
        action="store_true",
        help="start an open broker (no TLS, no SASL, no ACLs) instead of the secured default",
    )
    args = parser.parse_args(argv)
    port = args.port or DEFAULT_PORT
    return run_cli(
        NAME,
        args,
        start=lambda home: start(home, port, args.controller_port, args.timeout, plaintext=args.plaintext),
        stop=stop,
        status=lambda home: status(home, args.port),
    )


if __name__ == "__main__":
    sys.exit(main())
