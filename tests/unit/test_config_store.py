"""The config store on fakeredis: versions, history, events, announcements."""

from __future__ import annotations

import json

import pytest
from fakeredis import FakeAsyncRedis
from redis.crc import key_slot

from streamcart.config.store import ConfigStore
from streamcart.errors import ConfigurationError, InvalidConfigError
from tests.unit.support import KEYS

SCOPE = KEYS.config_scope("shop")


@pytest.fixture
def store(fake_redis: FakeAsyncRedis) -> ConfigStore:
    return ConfigStore(fake_redis, KEYS)


async def test_each_change_bumps_the_version_and_is_readable(store: ConfigStore) -> None:
    assert await store.version() == 0
    assert await store.set("global", "max_attempts", 3) == 1
    assert await store.set("shop", "greeting", "hi") == 2
    assert await store.set("shop", "featured", ["b", "a"]) == 3
    assert await store.version() == 3
    assert await store.get("global", "max_attempts") == 3
    assert await store.get("shop", "nothing") is None
    assert await store.list("shop") == {"featured": ["b", "a"], "greeting": "hi"}
    snapshot = await store.snapshot("global", "shop")
    assert snapshot.version == 3
    assert snapshot.scopes == {
        "global": {"max_attempts": 3},
        "shop": {"featured": ["b", "a"], "greeting": "hi"},
    }


async def test_values_are_stored_as_json_an_operator_can_read(
    store: ConfigStore, fake_redis: FakeAsyncRedis
) -> None:
    await store.set("shop", "greeting", "hi")
    await store.set("shop", "limits", {"b": 2, "a": 1})
    assert await fake_redis.hgetall(SCOPE) == {"greeting": '"hi"', "limits": '{"a":1,"b":2}'}


async def test_a_value_written_by_hand_without_json_quotes_reads_as_text(
    store: ConfigStore, fake_redis: FakeAsyncRedis
) -> None:
    await fake_redis.hset(SCOPE, "greeting", "hello there")
    assert await store.get("shop", "greeting") == "hello there"


async def test_setting_the_current_value_changes_nothing(
    store: ConfigStore, fake_redis: FakeAsyncRedis
) -> None:
    await store.set("shop", "limits", {"a": 1, "b": 2})
    assert await store.set("shop", "limits", {"b": 2, "a": 1}) == 1
    assert await store.unset("shop", "never-set") == 1
    assert await store.version() == 1
    assert len(await store.history()) == 1
    assert await fake_redis.xlen(KEYS.events("config")) == 1


async def test_unset_removes_the_key_and_records_it(store: ConfigStore) -> None:
    await store.set("shop", "greeting", "hi")
    assert await store.unset("shop", "greeting") == 2
    assert await store.get("shop", "greeting") is None
    [latest, first] = await store.history()
    assert (latest.version, latest.old, latest.new) == (2, '"hi"', None)
    assert (first.version, first.old, first.new) == (1, None, '"hi"')


async def test_history_records_old_new_and_redis_time_newest_first(
    store: ConfigStore, fake_redis: FakeAsyncRedis
) -> None:
    seconds, micros = await fake_redis.time()
    before_ms = seconds * 1000 + micros // 1000
    await store.set("global", "max_attempts", 3)
    await store.set("shop", "discount_pct", 10)
    await store.set("shop", "discount_pct", 20)
    changes = await store.history()
    assert [(c.version, c.scope, c.key, c.old, c.new) for c in changes] == [
        (3, "shop", "discount_pct", "10", "20"),
        (2, "shop", "discount_pct", None, "10"),
        (1, "global", "max_attempts", None, "3"),
    ]
    assert all(0 <= c.at_ms - before_ms < 5_000 for c in changes)
    assert [c.version for c in await store.history("shop", count=1)] == [3]
    assert [c.version for c in await store.history("global")] == [1]


async def test_history_of_one_scope_reaches_past_other_scopes_changes(
    store: ConfigStore,
) -> None:
    await store.set("shop", "greeting", "first")
    for i in range(450):  # more than two pages of another scope's changes
        await store.set("global", "batch_size", i + 1)
    [change] = await store.history("shop")
    assert change.new == '"first"'


async def test_a_change_emits_a_config_changed_event(
    store: ConfigStore, fake_redis: FakeAsyncRedis
) -> None:
    await store.set("shop", "discount_pct", 10)
    await store.unset("shop", "discount_pct")
    entries = await fake_redis.xrange(KEYS.events("config"))
    assert [fields["type"] for _, fields in entries] == ["config.changed"] * 2
    assert [json.loads(fields["data"]) for _, fields in entries] == [
        {"scope": "shop", "key": "discount_pct", "old": None, "new": 10, "version": 1},
        {"scope": "shop", "key": "discount_pct", "old": 10, "new": None, "version": 2},
    ]
    assert all(fields["id"] for _, fields in entries)


async def test_a_change_is_announced_with_its_version(
    store: ConfigStore, fake_redis: FakeAsyncRedis
) -> None:
    pubsub = fake_redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(KEYS.config_channel())
    try:
        await store.set("shop", "greeting", "hi")
        # The first read may be the subscription's confirmation, returned as None.
        messages = [await pubsub.get_message(timeout=0.5) for _ in range(2)]
        assert [m["data"] for m in messages if m is not None] == ["1"]
    finally:
        await pubsub.aclose()


async def test_a_malformed_scope_or_empty_key_is_refused(store: ConfigStore) -> None:
    with pytest.raises(ConfigurationError, match="must be 'global' or a service name"):
        await store.set("Shop Front", "greeting", "hi")
    with pytest.raises(ConfigurationError, match="must not be empty"):
        await store.set("shop", "", "hi")
    assert await store.version() == 0


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("dedup_window_s", 0, "dedup_window_s must be at least 1"),
        ("claim_timeout_ms", -1, "claim_timeout_ms must be at least 100"),
        ("max_attempts", "many", "Expected `int`, got `str`"),
    ],
)
async def test_a_service_option_out_of_its_range_is_never_stored(
    store: ConfigStore, key: str, value: object, why: str
) -> None:
    with pytest.raises(InvalidConfigError, match=why) as caught:
        await store.set("orders", key, value)
    assert (caught.value.scope, caught.value.key) == ("orders", key)
    assert await store.list("orders") == {}
    assert await store.version() == 0


def test_every_key_a_change_touches_is_in_one_cluster_slot() -> None:
    keys = [KEYS.config_scope("global"), KEYS.config_scope("shop")]
    keys += [KEYS.config_version(), KEYS.config_history()]
    assert len({key_slot(key.encode()) for key in keys}) == 1
