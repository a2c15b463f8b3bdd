"""A private Apache Kafka broker for tests that kill the broker: the same jars and
configuration as the dev stack's (tools/local_kafka.py), on free ports, with its log in a
temporary folder, started, SIGKILLed and restarted on the same data."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.child_process import ChildProcess
from tools.local_kafka import (
    JVM_OPTS,
    LIBS,
    LOG4J,
    answers,
    assemble,
    cluster_id,
    server_properties,
)
from tools.processes import Endpoint

START_WITHIN = 90.0


def free_port_pair() -> int:
    """A port p with p + 1 free too (the controller listens on the broker's port + 1),
    below the kernel's ephemeral range: free_port() and every outgoing connection take
    ports from that range, and one of them could grab p + 1 before the broker binds it."""
    for _ in range(100):
        port = random.randrange(20_000, 32_000)
        try:
            for candidate in (port, port + 1):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no two adjacent free ports")


class KafkaBroker(ChildProcess):
    def __init__(self, folder: Path) -> None:
        self.port = free_port_pair()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.data = folder / "kafka-data"
        self.conf = folder / "server.properties"
        super().__init__(folder / "kafka.log")

    def start(self) -> float:
        """Start (formatting the log the first time) and wait until it answers metadata
        requests; returns the seconds that took."""
        java = shutil.which("java")
        assert java is not None, "java is needed for the Kafka broker tests"
        assemble()
        self.conf.write_text(server_properties(Endpoint("127.0.0.1", self.port), self.data))
        classpath = f"{LIBS}/*"
        began = time.monotonic()
        if not (self.data / "meta.properties").exists():
            subprocess.run(
                [java, "-cp", classpath, "kafka.tools.StorageTool", "format", "--standalone",
                 f"--cluster-id={cluster_id()}", "-c", str(self.conf)],
                check=True, capture_output=True,
            )  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [java, *JVM_OPTS, f"-Dlog4j2.configurationFile={LOG4J}", "-cp", classpath,
                 "kafka.Kafka", str(self.conf)],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = began + START_WITHIN
        while answers(self.bootstrap) is not None:
            assert self.proc.poll() is None, self.log_tail()
            assert time.monotonic() < deadline, f"broker not up:\n{self.log_tail()}"
            time.sleep(0.1)
        return time.monotonic() - began
