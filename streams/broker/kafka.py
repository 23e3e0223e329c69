"""A real Apache Kafka broker: single-node KRaft (broker and controller in one JVM) on loopback,
from the jars Maven Central serves. For the integration tests and the bench against real Kafka,
and for developers with Java (`pql broker --kafka`); the embedded Tansu broker stays the default
(`streams.broker.embedded`).

- Jars: `org.apache.kafka:kafka_2.13`, `kafka-tools` (Kafka's own command-line tools, e.g. the
  consumer-group tool the tests compare `pql lag` with: `kafka_tool()`) and an SLF4J binding,
  gathered once with Maven
  (`maven-dependency-plugin:copy-dependencies`, runtime scope) into
  `~/.cache/pql-streams/kafka-<version>/libs` (`PQL_KAFKA_CACHE` moves it); Maven's own cache
  (~/.m2) makes a second machine-wide fetch cheap. Needs `java` (17+) and `mvn` on PATH.
- Storage: formatted once per data directory (`kafka.tools.StorageTool format`) with a cluster
  id of our own, so a broker restarted on the same directory keeps its topics, offsets and
  groups (the tests stop and start it mid-stream).
- Configuration as production clusters often have it: topic auto-creation off. The log cleaner
  runs with a small dedupe buffer (it would take 128 MiB of heap), internal topics have one
  replica, and a consumer group's first rebalance is not delayed.

Measured here (Kafka 4.1.1, OpenJDK 17, 2 cores), beyond the shared note on real Kafka: format
plus start takes ~5 s; `kafka-consumer-groups` is `kafka-tools`, not pulled by `kafka_2.13`; a
PEM keystore's key must be PKCS#8 (`BEGIN PRIVATE KEY`: an EC or RSA key in its own format
fails with "algid parse error"); SCRAM users of a KRaft cluster are created at format time
(`StorageTool format --add-scram`); the log cleaner looks for work every 15 s unless
`log.cleaner.backoff.ms` says otherwise.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from streams.broker.child import BrokerStartError, ChildBroker, free_port, tail

KAFKA_VERSION = "4.1.1"
SLF4J_BINDING = ("org.slf4j", "slf4j-simple", "1.7.36")
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
HEAP = ("-Xms256m", "-Xmx1g")

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.pql-streams</groupId>
  <artifactId>kafka-test-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>{slf4j_group}</groupId>
      <artifactId>{slf4j_artifact}</artifactId>
      <version>{slf4j_version}</version>
    </dependency>
  </dependencies>
</project>
"""


def cache_dir(version: str = KAFKA_VERSION) -> Path:
    base = os.environ.get("PQL_KAFKA_CACHE") or "~/.cache/pql-streams"
    return Path(base).expanduser() / f"kafka-{version}"


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerStartError(
            f"`{tool}` is not on PATH: the real Kafka broker needs Java 17+ and Maven (to fetch "
            "its jars from Maven Central). Without them, use the embedded broker (`pql broker`)."
        )
    return path


def ensure_jars(version: str = KAFKA_VERSION, timeout: float = 600.0) -> Path:
    """The directory with every jar the broker needs, fetched with Maven if not there yet."""
    libs = cache_dir(version) / "libs"
    group, artifact, slf4j = SLF4J_BINDING
    pom = _POM.format(
        kafka=version, slf4j_group=group, slf4j_artifact=artifact, slf4j_version=slf4j
    )
    marker = libs / ".complete"
    if marker.exists() and marker.read_text() == pom:
        return libs
    mvn = _need("mvn")
    libs.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fetch-", dir=libs.parent))
    try:
        (work / "pom.xml").write_text(pom)
        out = work / "libs"
        cmd = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(work / "pom.xml"),
            f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={out}",
        ]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise BrokerStartError(
                f"fetching Kafka {version} jars with Maven took over {timeout:.0f} s; is Maven "
                "Central reachable? Retry, or run: " + " ".join(cmd)
            ) from e
        if res.returncode != 0 or not any(out.glob("kafka_2.13-*.jar")):
            raise BrokerStartError(
                f"Maven could not fetch Kafka {version} (exit {res.returncode}); is Maven "
                f"Central reachable (`mvn -v`, proxy settings)? Its output:\n"
                + "\n".join((res.stdout + res.stderr).splitlines()[-20:])
            )
        # The marker holds the pom the jars came from: a project that needs more jars (or
        # other versions) fetches again instead of running with what an older one left.
        (out / ".complete").write_text(pom)
        if marker.exists() and marker.read_text() == pom:  # another process fetched meanwhile
            shutil.rmtree(out)
        else:
            stale = libs.with_name(f"libs.stale-{uuid.uuid4().hex[:8]}")
            if libs.exists():
                libs.rename(stale)
            out.rename(libs)
            shutil.rmtree(stale, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return libs


def kafka_tool(
    main_class: str, *args: str, version: str = KAFKA_VERSION, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run one of Kafka's own command-line tools from the same jars as the broker, e.g.
    `kafka_tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server",
    addr, "--describe", "--group", g)`; returns the finished process (output captured)."""
    libs = ensure_jars(version)
    cmd = [_need("java"), "-Xmx256m", "-cp", f"{libs}/*", main_class, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def new_cluster_id() -> str:
    """16 random bytes, base64url without padding, not starting with '-' (as Kafka wants)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaBroker(ChildBroker):
    """Apache Kafka (KRaft, one node) on host:port, its data in `data_dir` (a temp dir by
    default, removed by `cleanup()`): `stop()` then `start()` brings the same broker back
    with its data, on the same ports. `properties` adds or overrides server properties (a
    SASL/TLS listener, log cleaner settings); `scram_users` (name -> password) are created with
    SCRAM-SHA-512 credentials when the storage is formatted, so a SASL listener can use them
    from the first start. `sasl_ssl_keystore` (a PEM file: the broker's private key, PKCS#8,
    then its certificate chain) adds a second listener, SASL_SSL with SCRAM-SHA-512, on
    `sasl_ssl_port` (`sasl_ssl_bootstrap`)."""

    name = "kafka"
    stop_grace_s = 30.0

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        data_dir: Path | None = None,
        properties: Mapping[str, str] | None = None,
        version: str = KAFKA_VERSION,
        scram_users: Mapping[str, str] | None = None,
        sasl_ssl_keystore: Path | None = None,
    ) -> None:
        super().__init__(port, host)
        self.controller_port = free_port(host)
        self.version = version
        self._own_dir = data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix="pql-kafka-")) if data_dir is None else data_dir
        )
        self.properties = dict(properties or {})
        self.scram_users = dict(scram_users or {})
        self.sasl_ssl_keystore = sasl_ssl_keystore
        self.sasl_ssl_port = free_port(host) if sasl_ssl_keystore else None
        self.cluster_id: str | None = None

    @property
    def sasl_ssl_bootstrap(self) -> str:
        assert self.sasl_ssl_port is not None, "no SASL_SSL listener (sasl_ssl_keystore)"
        return f"{self.host}:{self.sasl_ssl_port}"

    def start(self, timeout: float = 120.0) -> KafkaBroker:
        return super().start(timeout)

    def cleanup(self) -> None:
        """Stop, and remove the data directory if it was ours."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- ChildBroker ----------------------------------------------------------------------------

    def _ports(self) -> list[int]:
        extra = [self.sasl_ssl_port] if self.sasl_ssl_port is not None else []
        return [self.port, self.controller_port, *extra]

    def _repick_ports(self) -> None:
        if self.cluster_id is None:  # not formatted yet: the ports are not written down
            self.port = free_port(self.host)
            self.controller_port = free_port(self.host)
            if self.sasl_ssl_port is not None:
                self.sasl_ssl_port = free_port(self.host)

    def _server_properties(self) -> dict[str, str]:
        host, port, cport = self.host, self.port, self.controller_port
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{host}:{cport}",
            "controller.listener.names": "CONTROLLER",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.dedupe.buffer.size": "2097152",
        }
        if self.sasl_ssl_keystore is not None:
            sasl = f"SASL_SSL://{host}:{self.sasl_ssl_port}"
            props["listeners"] += f",{sasl}"
            props["advertised.listeners"] += f",{sasl}"
            props["listener.security.protocol.map"] += ",SASL_SSL:SASL_SSL"
            props["sasl.enabled.mechanisms"] = "SCRAM-SHA-512"
            props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
            props["ssl.keystore.type"] = "PEM"
            props["ssl.keystore.location"] = str(self.sasl_ssl_keystore)
        props.update(self.properties)
        return props

    def _java(self) -> list[str]:
        libs = ensure_jars(self.version)
        return [
            _need("java"),
            *HEAP,
            "-Djava.awt.headless=true",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-Dorg.slf4j.simpleLogger.log.kafka.server.KafkaRaftServer=info",
            # Every group rebalance with its reason, in the broker's log (a few lines each).
            "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.coordinator.group.GroupMetadataManager"
            "=info",
            "-cp",
            f"{libs}/*",
        ]

    def _prepare(self, deadline: float) -> None:
        config = self.data_dir / "server.properties"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config.write_text("".join(f"{k}={v}\n" for k, v in self._server_properties().items()))
        meta = self.data_dir / "logs" / "meta.properties"
        if meta.exists():
            for line in meta.read_text().splitlines():
                if line.startswith("cluster.id="):
                    self.cluster_id = line.split("=", 1)[1].strip()
            return
        self.cluster_id = new_cluster_id()
        cmd = [
            *self._java(),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            self.cluster_id,
            "-c",
            str(config),
        ]
        for user, password in self.scram_users.items():
            cmd += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
        left = max(deadline - time.monotonic(), 10.0)
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=left)
        if res.returncode != 0:
            self.cluster_id = None
            raise BrokerStartError(
                f"formatting Kafka's storage in {self.data_dir} failed (exit {res.returncode}):\n"
                + "\n".join((res.stdout + res.stderr).splitlines()[-20:])
            )

    def _command(self) -> list[str]:
        return [*self._java(), "kafka.Kafka", str(self.data_dir / "server.properties")]

    def _check_cluster(self, cluster_id: str | None) -> None:
        if cluster_id != self.cluster_id:
            raise BrokerStartError(
                f"{self.bootstrap} answers, but as cluster {cluster_id!r}, not the Kafka broker "
                f"started here ({self.cluster_id!r}); pick another port. Its output:\n"
                + tail(self.log_path)
            )


if __name__ == "__main__":  # `python -m streams.broker.kafka`: fetch the jars (make test does)
    print(ensure_jars())
