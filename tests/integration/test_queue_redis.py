"""The Redis waiting room (`--queue redis://`, docs/waiting-room.md) with
two concertd instances on one throwaway redis-server: positions are exact
whichever instance people enter through, max_active and the admission rate
hold for the pair, one instance holds the admission lease and the other
takes over when it is killed, Redis stopped means 503 (and /health/ready
names the queue) until it returns, and `seed --active-tokens` writes the
tokens to Redis.

Each instance has its own SQLite file here: only the waiting room is
shared. The rest of the suite runs against Redis with CONCERT_TEST_QUEUE=redis
(conftest.py)."""

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import assert_error, assert_ok_json, run_cli
from redis_util import RedisServer
from test_waiting_room import Q, enter, poll, stats, wait_for

pytestmark = pytest.mark.distributed

PREFIX = "t:pair:"


@pytest.fixture
def redis(tmp_path):
    r = RedisServer(tmp_path / "redis").start()
    yield r
    r.kill(signal.SIGTERM)


def pair(server, redis, *args, n=2, lease="1s"):
    """n instances on one Redis and one key prefix; empty waiting room."""
    common = ["--queue", redis.url, "--queue-prefix", PREFIX, "--queue-lease", lease, *args]
    return [server(args=common, tokens=False) for _ in range(n)]


def lease_pid(redis):
    """The PID in the lease holder's id (HOST:PID:RANDOM), or None."""
    v = redis.cmd("GET", PREFIX + "lease")
    return int(v.split(":")[-2]) if v else None


def test_positions_are_exact_across_instances(server, redis):
    a, b = pair(server, redis, "--queue-max-active", "1")
    tokens = [enter((a, b)[u % 2], u, 201)["token"] for u in range(1, 21)]
    wait_for(lambda: stats(a)["active"] == 1, 5, what="the first admission")
    # user 1 was admitted; the others are 1..19 in arrival order, read through either instance
    assert poll(b, tokens[0])["status"] == "ACTIVATED"
    for i, t in enumerate(tokens[1:], start=1):
        pa, pb = poll(a, t), poll(b, t)
        assert pa["status"] == pb["status"] == "WAITING"
        assert pa["position"] == pb["position"] == i, (i, pa, pb)
    # entering again through the other instance gives the same token and place
    again = enter(b, 10, 200)
    assert again["token"] == tokens[9] and again["position"] == 9
    # someone in the middle leaves through one instance: the other sees everyone behind move up
    assert b.delete(Q, token=tokens[5]).status == 204
    assert poll(a, tokens[5])["status"] == "EXPIRED"
    assert [poll(a, t)["position"] for t in tokens[6:]] == list(range(5, 19))
    assert stats(a)["waiting"] == stats(b)["waiting"] == 18


def test_concurrent_enters_through_both_instances(server, redis):
    a, b = pair(server, redis, "--queue-max-active", "1")
    # one user entering 40 times at once through both: one token, one 201
    with ThreadPoolExecutor(16) as ex:
        rs = list(ex.map(lambda i: (a, b)[i % 2].post(Q, {"userId": 500}, token=None), range(40)))
    assert sorted(r.status for r in rs) == [200] * 39 + [201], [r.status for r in rs]
    assert len({r.json["token"] for r in rs}) == 1
    # 200 users at once through both: unique tokens, positions a permutation, as read by either
    with ThreadPoolExecutor(16) as ex:
        bodies = list(ex.map(lambda u: enter((a, b)[u % 2], u, 201), range(1, 201)))
    assert len({x["token"] for x in bodies}) == 200
    wait_for(lambda: stats(a)["active"] == 1, 5, what="user 500's admission")
    got = sorted(poll((a, b)[i % 2], x["token"])["position"] for i, x in enumerate(bodies))
    assert got == list(range(1, 201)), got[:10]


def test_max_active_and_the_rate_hold_for_the_pair(server, redis):
    a, b = pair(server, redis, "--queue-max-active", "5", "--queue-admit-per-sec", "100000")
    users = list(range(1, 41))
    tokens = {}
    with ThreadPoolExecutor(8) as ex:
        for u, body in zip(users, ex.map(lambda u: enter((a, b)[u % 2], u, 201), users)):
            tokens[u] = body["token"]
    seen, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            seen.append(redis.cmd("ZCARD", PREFIX + "active"))
            time.sleep(0.005)

    t = threading.Thread(target=sample)
    t.start()
    try:
        left = set()
        deadline = time.monotonic() + 30
        while len(left) < len(users) and time.monotonic() < deadline:
            for u in users:  # whoever is in leaves, half through each instance
                if u not in left and poll(a, tokens[u])["status"] == "ACTIVATED":
                    assert (b if u % 2 else a).delete(Q, token=tokens[u]).status == 204
                    left.add(u)
            time.sleep(0.02)
    finally:
        stop.set()
        t.join()
    assert len(left) == len(users), f"only {len(left)} of {len(users)} were admitted in 30 s"
    assert seen and max(seen) <= 5, f"more than max_active ACTIVATED at once: {max(seen)}"
    assert max(seen) == 5, "the line never filled max_active: the test proves nothing"
    s = stats(b)
    assert s["active"] == 0 and s["waiting"] == 0, s


def test_the_admission_rate_is_for_the_pair_not_per_instance(server, redis):
    a, b = pair(server, redis, "--queue-admit-per-sec", "20", "--queue-max-active", "1000")
    for u in range(1, 41):
        enter((a, b)[u % 2], u, 201)
    t0 = time.monotonic()
    wait_for(lambda: stats(a)["active"] == 40, 10, step=0.02, what="40 admissions")
    took = time.monotonic() - t0
    # 40 at 20/s is 2 s for the pair; two instances each admitting 20/s would take 1 s
    assert took >= 1.6, f"40 admitted in {took:.2f}s: faster than 20/s"
    assert int(redis.cmd("HGET", PREFIX + "stats", "admitted")) == 40
    # both show the pair's admissions, not only the one that admitted
    wait_for(lambda: stats(a)["admittedLastMinute"] == stats(b)["admittedLastMinute"] == 40, 2,
             what="admittedLastMinute 40 on both instances")


def test_admin_limits_set_through_one_instance_hold_for_both(server, redis):
    key = "test-admin-key-0123"
    a, b = pair(server, redis, "--queue-max-active", "1", "--admin-key", key)
    pids = {a.proc.pid: a, b.proc.pid: b}
    for u in range(1, 6):
        enter(a, u, 201)
    wait_for(lambda: stats(a)["active"] == 1, 5, what="the first admission")
    wait_for(lambda: lease_pid(redis) in pids, 5, what="a lease holder")
    other = b if pids[lease_pid(redis)] is a else a  # the change goes to the one not admitting
    r = other.put("/api/v1/admin/waiting-room", {"maxActive": 3}, token=None,
                  headers={"X-Admin-Key": key})
    assert assert_ok_json(r)["maxActive"] == 3
    wait_for(lambda: stats(a)["active"] == 3, 5, what="admissions up to the new maxActive")
    time.sleep(0.3)
    assert stats(a)["active"] == 3  # and no further
    assert stats(a)["maxActive"] == stats(b)["maxActive"] == 3


def test_one_lease_holder_and_a_killed_one_is_replaced(server, redis):
    a, b = pair(server, redis, "--queue-max-active", "1000", lease="1s")
    pids = {a.proc.pid: a, b.proc.pid: b}
    wait_for(lambda: lease_pid(redis) in pids, 5, what="a lease holder")
    holder = pids[lease_pid(redis)]
    for _ in range(40):  # renewed by its holder, never taken by the other
        assert pids.get(lease_pid(redis)) is holder
        time.sleep(0.025)
    other = b if holder is a else a
    holder.allowed_signals.add(signal.SIGKILL)
    holder.expect_clean_exit = False
    holder.proc.kill()
    holder.proc.wait(10)
    t0 = time.monotonic()
    tok = enter(other, 7, 201)["token"]
    wait_for(lambda: poll(other, tok)["status"] == "ACTIVATED", 5, step=0.02,
             what="an admission by the surviving instance")
    took = time.monotonic() - t0
    assert took <= 1.0 + 0.5, f"the survivor took over after {took:.2f}s, lease is 1 s"
    assert lease_pid(redis) == other.proc.pid


def test_a_clean_shutdown_hands_the_lease_over_at_once(server, redis):
    a, b = pair(server, redis, "--queue-max-active", "1000", lease="10s")
    pids = {a.proc.pid: a, b.proc.pid: b}
    wait_for(lambda: lease_pid(redis) in pids, 5, what="a lease holder")
    holder = pids[lease_pid(redis)]
    other = b if holder is a else a
    assert holder.stop() == 0
    tok = enter(other, 8, 201)["token"]
    wait_for(lambda: poll(other, tok)["status"] == "ACTIVATED", 3, step=0.02,
             what="an admission well before the 10 s lease ran out")


@pytest.mark.fault
def test_redis_down_is_503_and_nothing_else_breaks_then_it_recovers(server, redis):
    (srv,) = pair(server, redis, "--queue-max-active", "1000", n=1)
    tok = enter(srv, 3, 201)["token"]
    wait_for(lambda: poll(srv, tok)["status"] == "ACTIVATED", 5, what="admission")
    redis.kill()  # SIGKILL; no persistence: the line is gone with it
    down = "waiting room"
    assert_error(srv.post(Q, {"userId": 4}, token=None), 503, "UNAVAILABLE", down)
    assert_error(srv.get(Q, token=tok), 503, "UNAVAILABLE", down)
    assert_error(srv.delete(Q, token=tok), 503, "UNAVAILABLE", down)
    assert_error(srv.get("/api/v1/concerts/1/sessions", token=tok), 503, "UNAVAILABLE", down)
    assert_error(srv.post("/api/reservations/seats", {"userId": 3, "concertId": 1,
                                                      "scheduleId": 1, "seatIdList": [1]},
                          token=None), 503, "UNAVAILABLE", down)
    assert_error(srv.get("/api/token/status/3", token=None), 503, "UNAVAILABLE")
    assert_error(srv.get(Q + "/stats", token=None), 503, "UNAVAILABLE", down)
    r = srv.get("/health/ready", token=None)
    err = assert_error(r, 503, "UNAVAILABLE", mentions="queue")
    assert r.json["checks"] == {"store": "ok", "queue": "down"}, (err, r.json)
    # what does not need the waiting room still works
    assert assert_ok_json(srv.get("/api/v1/concerts", token=None))["concerts"]
    assert srv.post("/api/v1/users/9/balance/charge", {"amount": 5}, token=None).status == 200
    assert srv.get("/metrics", token=None).status == 200
    srv.assert_live("with Redis down")
    redis.start()  # same port, empty
    wait_for(lambda: srv.get("/health/ready", token=None).status == 200, 5, what="ready again")
    again = enter(srv, 3, 201)  # a new token: the old line went with the old Redis
    wait_for(lambda: poll(srv, again["token"])["status"] == "ACTIVATED", 5,
             what="admission after the outage")


@pytest.mark.fault
def test_a_quick_redis_restart_costs_no_request(server, redis):
    (srv,) = pair(server, redis, n=1)
    with ThreadPoolExecutor(8) as ex:  # fill the connection pool
        assert all(b["status"] == "WAITING" for b in ex.map(lambda u: enter(srv, u, 201),
                                                             range(1, 41)))
    redis.kill()
    redis.start()  # same port, empty: every pooled connection is dead now
    for u in range(41, 49):  # each would hit a dead pooled connection first
        assert srv.post(Q, {"userId": u}, token=None).status == 201
    assert srv.get("/health/ready", token=None).status == 200


@pytest.mark.fault
def test_starts_while_redis_is_down_and_works_once_it_is_up(server, redis):
    redis.kill()
    (srv,) = pair(server, redis, n=1)
    assert_error(srv.get("/health/ready", token=None), 503, "UNAVAILABLE", mentions="queue")
    assert_error(srv.post(Q, {"userId": 1}, token=None), 503, "UNAVAILABLE")
    redis.start()
    wait_for(lambda: srv.get("/health/ready", token=None).status == 200, 5, what="ready")
    assert enter(srv, 1, 201)["position"] in (0, 1)


def test_tokens_survive_a_concertd_restart(server, redis):
    (a,) = pair(server, redis, "--queue-max-active", "1", n=1)
    t1, t2, t3 = (enter(a, u, 201)["token"] for u in (1, 2, 3))
    wait_for(lambda: poll(a, t1)["status"] == "ACTIVATED", 5, what="admission")
    assert a.stop() == 0
    (b,) = pair(server, redis, "--queue-max-active", "1", n=1)  # another process, another db file
    assert poll(b, t1)["status"] == "ACTIVATED"
    assert [poll(b, t)["position"] for t in (t2, t3)] == [1, 2]


def test_seed_writes_active_tokens_to_redis(server, redis, tmp_path):
    db = tmp_path / "seed.db"
    run_cli("seed", "--db", f"sqlite:{db}", "--users", "30", "--active-tokens", "lt_{n}",
            "--queue", redis.url, "--queue-prefix", PREFIX, check=True)
    assert redis.cmd("ZCARD", PREFIX + "active") == 30
    assert redis.cmd("GET", PREFIX + "u:17") == "lt_17"
    srv = server(args=["--queue", redis.url, "--queue-prefix", PREFIX], db_path=db,
                 do_seed=False, tokens=False)
    assert poll(srv, "lt_17")["status"] == "ACTIVATED"
    assert srv.get("/api/v1/concerts/1/sessions", token="lt_17").status == 200
    assert stats(srv)["active"] == 30
    # seeding again keeps one live token per user
    run_cli("seed", "--db", f"sqlite:{tmp_path / 'again.db'}", "--users", "30",
            "--active-tokens", "lt2_{n}", "--queue", redis.url, "--queue-prefix", PREFIX,
            check=True)
    assert stats(srv)["active"] == 30
    assert poll(srv, "lt_17")["status"] == "EXPIRED"
    assert poll(srv, "lt2_17")["status"] == "ACTIVATED"


def test_seed_fails_when_redis_is_down(redis, tmp_path):
    redis.kill()
    cp = run_cli("seed", "--db", f"sqlite:{tmp_path / 's.db'}", "--users", "3",
                 "--active-tokens", "x_{n}", "--queue", redis.url)
    assert cp.returncode != 0 and "redis://" in cp.stderr, cp.stderr


@pytest.mark.parametrize("args, mention", [
    (["--queue", "redis://"], "redis://HOST"),
    (["--queue", "redis://127.0.0.1:0"], "redis://HOST"),
    (["--queue", "redis://127.0.0.1:6379/x"], "redis://HOST"),
    (["--queue", "memcached://x"], "want local or redis://"),
    (["--queue", "redis://127.0.0.1:6379", "--queue-lease", "100ms"], "--queue-lease"),
])
def test_bad_queue_options_stop_start_up(tmp_path, args, mention):
    cp = run_cli("serve", "--listen", "127.0.0.1:0", "--db", f"sqlite:{tmp_path}/x.db", *args,
                 timeout=20)
    assert cp.returncode != 0 and mention in cp.stderr, cp.stderr
