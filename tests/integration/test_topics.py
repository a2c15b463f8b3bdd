"""Topics are created as services/common/topics.py describes them, and never where the
platform must not create them (Kubernetes: Strimzi owns them)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.common.kafka import delete_topics, ensure_topics
from services.common.settings import Settings
from services.common.topics import topic_specs


async def test_bootstrap_creates_every_topic_with_its_partitions_and_retention(
    settings: Settings,
) -> None:
    s = dataclasses.replace(settings, kafka_topic_prefix=f"spec{uuid.uuid4().hex[:8]}.")
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap_servers)
    await admin.start()
    try:
        created = await ensure_topics(s)
        assert sorted(created) == sorted(s.topic(spec.name) for spec in topic_specs())
        assert await ensure_topics(s) == []  # idempotent
        # A topic just created may be described without its partitions until the broker's
        # metadata caught up (seen under load): ask again, for a bounded time.
        for _ in range(50):
            described = {t["topic"]: t for t in await admin.describe_topics(created)}
            if all(described[t]["partitions"] for t in created):
                break
            await asyncio.sleep(0.2)
        for spec in topic_specs():
            topic = described[s.topic(spec.name)]
            assert len(topic["partitions"]) == spec.partitions, spec.name
            assert {len(p["replicas"]) for p in topic["partitions"]} == {1}  # one broker
            (resource,) = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, s.topic(spec.name))]
            )
            entries = resource.to_object()["resources"][0]["config_entries"]
            retention = {e["config_names"]: e["config_value"] for e in entries}["retention.ms"]
            assert int(retention) == spec.retention_ms, spec.name
    finally:
        await admin.close()
        await delete_topics(s)


async def test_with_topic_creation_off_bootstrap_waits_and_names_the_missing_topics(
    settings: Settings,
) -> None:
    s = dataclasses.replace(
        settings,
        kafka_topic_prefix=f"owned{uuid.uuid4().hex[:8]}.",
        kafka_create_topics=False,
    )
    with pytest.raises(RuntimeError, match=r"topics missing after .*orders\.dlq"):
        await ensure_topics(s, wait_seconds=1.0)
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap_servers)
    await admin.start()
    try:
        assert [t for t in await admin.list_topics() if t.startswith(s.kafka_topic_prefix)] == []
    finally:
        await admin.close()
    # Once the owner (Strimzi, here ensure_topics with creation on) made them: ready.
    await ensure_topics(dataclasses.replace(s, kafka_create_topics=True), partitions=1)
    try:
        assert await ensure_topics(s, wait_seconds=1.0) == []
    finally:
        await delete_topics(s)
