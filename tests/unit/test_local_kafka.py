"""The local Apache Kafka broker's configuration (tools/local_kafka.py), without starting it."""

from __future__ import annotations

import base64
from pathlib import Path

from tools.local_kafka import cluster_id, server_properties
from tools.processes import Endpoint


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_the_broker_is_its_own_controller_on_the_next_port() -> None:
    conf = properties(server_properties(Endpoint("127.0.0.1", 19092), Path("/tmp/k")))
    assert conf["process.roles"] == "broker,controller"
    assert conf["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert conf["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert conf["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert conf["log.dirs"] == "/tmp/k"


def test_a_wildcard_bind_address_is_advertised_as_loopback() -> None:
    conf = properties(server_properties(Endpoint("0.0.0.0", 9092), Path("/tmp/k")))
    assert conf["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"


def test_topics_are_never_auto_created_and_tests_may_use_short_sessions() -> None:
    conf = properties(server_properties(Endpoint("127.0.0.1", 9092), Path("/tmp/k")))
    assert conf["auto.create.topics.enable"] == "false"
    # tests/conftest.py asks for a 2 s consumer session; the broker must accept it.
    assert int(conf["group.min.session.timeout.ms"]) <= 2000
    assert int(conf["broker.session.timeout.ms"]) > int(conf["broker.heartbeat.interval.ms"])


def test_cluster_ids_are_random_uuids_in_kafkas_base64_form() -> None:
    ids = {cluster_id() for _ in range(20)}
    assert len(ids) == 20
    for cid in ids:
        assert len(cid) == 22 and "=" not in cid
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16
