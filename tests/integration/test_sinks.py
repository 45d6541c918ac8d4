"""The Redis Streams event sink (`--events redis://HOST:PORT/STREAM`,
docs/events.md) against a real redis-server this module starts on a free
loopback port (no persistence) and stops by PID: the stream holds the
outbox's events, in order, exactly as committed; a Redis outage or a
`kill -9` of concertd loses none; a redelivered batch is not appended twice
(the entry id is "<outbox id>-1").

Only holds that are paid write an event today (`payment.completed`), so the
tests hold seats, pay, and compare the stream with the outbox table."""

import json
import signal
import time

import pytest

from booking_util import execute, rows, scalar
from conftest import free_port, run_cli
from redis_util import RedisServer
from test_outbox import PRICE, paid_reservation, wait_for

pytestmark = pytest.mark.distributed

STREAM = "concertd:test-events"


class StreamRedis(RedisServer):
    def entries(self, stream=STREAM):
        """[(entry id, {field: value})] of the whole stream, oldest first."""
        return [(eid, dict(zip(kv[::2], kv[1::2])))
                for eid, kv in self.cmd("XRANGE", stream, "-", "+") or []]


@pytest.fixture
def redis(tmp_path):
    r = StreamRedis(tmp_path / "redis").start()
    yield r
    r.kill(signal.SIGTERM)


# ---------------------------------------------------------------------------


def outbox(db):
    return rows(db, "SELECT id, topic, aggregate_id, payload, created_at FROM outbox ORDER BY id")


def unpublished(db):
    return scalar(db, "SELECT count(*) FROM outbox WHERE published_at IS NULL")


def rfc3339(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def assert_stream_is_outbox(entries, want):
    """Each entry is one outbox row, in outbox order, with every field as committed."""
    assert [e for e, _ in entries] == [f"{i}-1" for i, *_ in want]
    for (eid, f), (i, topic, agg, payload, created) in zip(entries, want):
        assert f["id"] == str(i) and f["topic"] == topic and f["aggregateId"] == str(agg)
        assert json.loads(f["payload"]) == json.loads(payload)
        assert f["createdAt"] == rfc3339(created)


def serve_with_redis(server, redis, **kw):
    return server(seed=["--price", str(PRICE), "--users", "30", "--balance", "5000"],
                  args=["--events", f"redis://127.0.0.1:{redis.port}/{STREAM}"], **kw)


def test_redis_stream_holds_the_outbox_in_order(server, redis):
    srv = serve_with_redis(server, redis)
    paid = [paid_reservation(srv, uid, uid) for uid in (2, 3, 4, 5)]  # user 1 reads
    wait_for("4 entries in the stream", lambda: len(redis.entries()) == 4)
    want = outbox(srv.db_path)
    assert len(want) == 4
    entries = redis.entries()
    assert_stream_is_outbox(entries, want)
    for (_, f), (rid, pid) in zip(entries, paid):
        p = json.loads(f["payload"])
        assert f["topic"] == "payment.completed" and p["reservationId"] == rid
        assert p["paymentId"] == pid and p["amount"] == PRICE
    wait_for("all marked published", lambda: unpublished(srv.db_path) == 0)
    time.sleep(0.5)
    assert len(redis.entries()) == 4  # published once, not again


def test_default_stream_name(server, redis):
    srv = server(seed=["--price", str(PRICE), "--users", "10", "--balance", "5000"],
                 args=["--events", f"redis://127.0.0.1:{redis.port}"])
    paid_reservation(srv, 2, 2)
    wait_for("1 entry in concertd:events",
             lambda: len(redis.entries("concertd:events")) == 1)
    assert_stream_is_outbox(redis.entries("concertd:events"), outbox(srv.db_path))


def test_a_redelivered_batch_is_not_appended_twice(server, redis):
    srv = serve_with_redis(server, redis)
    for uid in (2, 3, 4):
        paid_reservation(srv, uid, uid)
    wait_for("all marked published", lambda: unpublished(srv.db_path) == 0)
    assert srv.stop() == 0
    # as after a crash between Redis's acknowledgement and the relay's mark
    assert len(execute(srv.db_path, "UPDATE outbox SET published_at = NULL RETURNING id")) == 3
    again = serve_with_redis(server, redis, db_path=srv.db_path, do_seed=False)
    paid_reservation(again, 5, 5)
    wait_for("all marked published again", lambda: unpublished(again.db_path) == 0)
    assert_stream_is_outbox(redis.entries(), outbox(again.db_path))  # 4 entries, no repeat


@pytest.mark.fault
def test_redis_outage_loses_no_event(server, redis):
    srv = serve_with_redis(server, redis)
    paid_reservation(srv, 2, 2)
    wait_for("first event published", lambda: unpublished(srv.db_path) == 0)
    port = redis.port
    redis.kill()  # SIGKILL; no persistence: the stream is gone with it
    for uid in (3, 4, 5):
        paid_reservation(srv, uid, uid)  # payments keep working without the sink
    time.sleep(1.0)  # several relay passes fail meanwhile
    assert unpublished(srv.db_path) == 3  # nothing marked that Redis did not take
    redis.port = port
    redis.start()  # same port, empty
    wait_for("the 3 events after the outage", lambda: len(redis.entries()) == 3)
    assert_stream_is_outbox(redis.entries(), outbox(srv.db_path)[1:])
    wait_for("all marked published", lambda: unpublished(srv.db_path) == 0)


@pytest.mark.fault
def test_kill_9_and_restart_lose_no_event(server, redis):
    srv = serve_with_redis(server, redis)
    path = srv.db_path
    for uid in range(2, 10):
        paid_reservation(srv, uid, uid)
    srv.allowed_signals.add(signal.SIGKILL)
    srv.expect_clean_exit = False
    srv.signal(signal.SIGKILL)
    srv.proc.wait(5)
    again = serve_with_redis(server, redis, db_path=path, do_seed=False)
    for uid in range(10, 13):
        paid_reservation(again, uid, uid)
    want = outbox(path)
    assert len(want) == 11
    wait_for("every event in the stream", lambda: len(redis.entries()) >= 11)
    wait_for("all marked published", lambda: unpublished(path) == 0)
    entries = redis.entries()
    # at least once, deduped by id: Redis refuses an entry id it has, so
    # after dedupe (here: by construction) the stream is the outbox
    assert {f["id"] for _, f in entries} == {str(i) for i, *_ in want}
    assert_stream_is_outbox(entries, want)


def test_starts_while_redis_is_down_and_publishes_once_it_is_up(server, tmp_path):
    r = StreamRedis(tmp_path / "late")
    srv = server(seed=["--price", str(PRICE), "--users", "10", "--balance", "5000"],
                 args=["--events", f"redis://127.0.0.1:{r.port}/{STREAM}"])
    paid_reservation(srv, 2, 2)
    time.sleep(0.6)
    assert unpublished(srv.db_path) == 1
    r.start()
    try:
        wait_for("the event once Redis is up", lambda: len(r.entries()) == 1)
        assert_stream_is_outbox(r.entries(), outbox(srv.db_path))
    finally:
        r.kill(signal.SIGTERM)


@pytest.mark.parametrize("url", ["redis://", "redis://:6379", "redis://h:0", "redis://h:x",
                                 "redis://h:6379/", "kafka://", "kafka://b:9092",
                                 "kafka:///t", "kafka://b/t/u", "nats://x"])
def test_bad_events_url_stops_start_up(tmp_path, url):
    cp = run_cli("serve", "--listen", f"127.0.0.1:{free_port()}", "--db",
                 f"sqlite:{tmp_path / 'c.db'}", "--events", url, timeout=20)
    assert cp.returncode != 0
    assert "--events" in cp.stderr and url in cp.stderr
