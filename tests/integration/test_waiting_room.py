"""The waiting room (embedded): enter, poll, leave, stats, admin limits,
admission at the configured rate, max_active, idle drop, active TTL,
restarts, and the gate on the protected routes."""

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import active_token, assert_error, assert_ok_json

Q = "/api/v1/waiting-queues"
ADMIN = "/api/v1/admin/waiting-room"
KEY = "test-admin-key-0123"


def enter(srv, user, want=(200, 201)):
    r = srv.post(Q, {"userId": user}, token=None)
    assert r.status in ((want,) if isinstance(want, int) else want), r
    body = assert_ok_json(r, r.status)
    assert body["userId"] == user and body["status"] in ("WAITING", "ACTIVATED"), body
    return body


def poll(srv, token):
    return assert_ok_json(srv.get(Q, token=token))


def stats(srv):
    return assert_ok_json(srv.get(Q + "/stats", token=None))


def wait_for(cond, timeout, step=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    pytest.fail(f"{what} not reached within {timeout}s")


def room(server, *args, **kw):
    """A server whose waiting room starts empty (no pre-issued tokens)."""
    return server(args=list(args), tokens=False, **kw)


# --- enter / poll / leave ----------------------------------------------------


def test_enter_then_poll_then_leave(server):
    srv = room(server, "--queue-max-active", "1")
    first = enter(srv, 101, 201)
    b = enter(srv, 102, 201)
    assert set(b) == {"token", "userId", "status", "position", "etaSeconds"}, b
    assert len(b["token"]) >= 22
    wait_for(lambda: poll(srv, first["token"])["status"] == "ACTIVATED", 5, what="admission")
    got = poll(srv, b["token"])
    assert got["status"] == "WAITING" and got["position"] == 1 and got["etaSeconds"] >= 1, got
    assert got["activeUntil"] is None and got["token"] == b["token"] and got["userId"] == 102
    act = poll(srv, first["token"])
    assert act["position"] == 0 and act["etaSeconds"] == 0 and act["activeUntil"].endswith("Z")
    # Entering again while live: the same token, 200.
    again = enter(srv, 102, 200)
    assert again["token"] == b["token"] and again["position"] == 1
    # Leaving: 204, EXPIRED; the slot goes to the next at the next tick.
    c = enter(srv, 103, 201)
    r = srv.delete(Q, token=first["token"])
    assert r.status == 204 and r.body == b"", r
    assert poll(srv, first["token"])["status"] == "EXPIRED"
    wait_for(lambda: poll(srv, b["token"])["status"] == "ACTIVATED", 5, what="next admission")
    assert poll(srv, c["token"])["position"] == 1
    # After EXPIRED, entering again issues a new token at the back.
    back = enter(srv, 101, 201)
    assert back["token"] != first["token"] and back["position"] == 2


def test_user_id_may_be_a_decimal_string(server):
    srv = room(server)
    r = srv.post(Q, {"userId": "4242"}, token=None)
    assert assert_ok_json(r, 201)["userId"] == 4242


@pytest.mark.parametrize("body,mention", [
    ({}, "userId"),
    ({"userId": 0}, "userId"),
    ({"userId": -5}, "userId"),
    ({"userId": "abc"}, "userId"),
    ({"userId": 1.5}, "userId"),
    ({"userId": None}, "userId"),
    ({"userId": 1, "extra": 2}, "extra"),
    ({"userId": 9223372036854775808}, [("userId", "too big")]),
    ([1], "object"),
    ("not json", "JSON"),
    ("", "empty"),
])
def test_enter_rejects_bad_bodies(server, body, mention):
    srv = room(server)
    assert_error(srv.post(Q, body, token=None), 400, "INVALID_REQUEST", mention)
    assert stats(srv)["waiting"] == 0


def test_poll_and_leave_need_a_known_token(server):
    srv = room(server)
    assert_error(srv.get(Q, token=None), 401, "TOKEN_MISSING", "QUEUE-TOKEN")
    assert_error(srv.get(Q, token="no-such-token"), 401, "TOKEN_INVALID")
    assert_error(srv.get(Q, token="bad token with spaces"), 401, "TOKEN_INVALID")
    assert_error(srv.get(Q, token="x" * 200), 401, "TOKEN_INVALID")
    assert_error(srv.delete(Q, token=None), 401, "TOKEN_MISSING")
    assert_error(srv.delete(Q, token="no-such-token"), 401, "TOKEN_INVALID")


def test_stats_shape(server):
    srv = room(server, "--queue-max-active", "7", "--queue-admit-per-sec", "3")
    s = stats(srv)
    assert s == {"waiting": 0, "active": 0, "maxActive": 7, "admitPerSec": 3,
                 "admittedLastMinute": 0}, s


# --- concurrency, rate and limits -------------------------------------------


def test_thousand_concurrent_enters_get_unique_tokens_and_exact_positions(server):
    srv = room(server, "--queue-max-active", "1", "--queue-admit-per-sec", "1000")
    users = list(range(1001, 2001))
    with ThreadPoolExecutor(max_workers=64) as ex:
        got = list(ex.map(lambda u: enter(srv, u, 201), users))
    tokens = [g["token"] for g in got]
    assert len(set(tokens)) == len(users), "tokens are not unique"
    assert sorted(g["userId"] for g in got) == users
    wait_for(lambda: stats(srv)["active"] == 1, 5, what="one admission")
    with ThreadPoolExecutor(max_workers=32) as ex:
        polled = list(ex.map(lambda t: poll(srv, t), tokens))
    active = [p for p in polled if p["status"] == "ACTIVATED"]
    waiting = sorted(p["position"] for p in polled if p["status"] == "WAITING")
    assert len(active) == 1, active
    assert waiting == list(range(1, len(users))), "positions are not exactly 1..N-active"
    s = stats(srv)
    assert s["waiting"] == len(users) - 1 and s["active"] == 1, s


def test_admission_follows_the_configured_rate(server):
    srv = room(server, "--queue-admit-per-sec", "20", "--queue-max-active", "1000")
    t0 = time.monotonic()  # admission may start with the first enter (each one a durable write)
    toks = [enter(srv, u)["token"] for u in range(1, 61)]
    seen = []
    while time.monotonic() - t0 < 10:
        s = stats(srv)
        seen.append((time.monotonic() - t0, s["active"]))
        if s["active"] == 60:
            break
        time.sleep(0.1)
    took = seen[-1][0]
    assert seen[-1][1] == 60, f"not everyone was admitted within 10 s: {seen[-5:]}"
    # 60 at 20/s is 3 s; never faster than the rate allows (plus one tick).
    for t, n in seen:
        assert n <= 20 * t + 20 * 0.1 + 2, f"{n} admitted after {t:.2f}s exceeds 20/s: {seen}"
    assert took >= 2.5, f"60 admitted in {took:.2f}s, faster than 20/s"
    assert all(poll(srv, t)["status"] == "ACTIVATED" for t in toks)
    assert stats(srv)["admittedLastMinute"] == 60


def test_never_more_than_max_active_even_with_leaves(server):
    srv = room(server, "--queue-max-active", "10", "--queue-admit-per-sec", "100000")
    toks = [enter(srv, u)["token"] for u in range(1, 51)]
    stop = threading.Event()
    worst = [0]

    def watch():
        while not stop.is_set():
            worst[0] = max(worst[0], stats(srv)["active"])
            time.sleep(0.01)

    w = threading.Thread(target=watch)
    w.start()
    try:
        wait_for(lambda: stats(srv)["active"] == 10, 5, what="10 active")
        active = [t for t in toks if poll(srv, t)["status"] == "ACTIVATED"]
        assert len(active) == 10
        for t in active[:5]:
            assert srv.delete(Q, token=t).status == 204
        wait_for(lambda: stats(srv)["waiting"] == 35, 5, what="5 more admitted")
        time.sleep(0.3)
    finally:
        stop.set()
        w.join()
    assert worst[0] <= 10, f"{worst[0]} ACTIVATED at once with max_active 10"
    states = [poll(srv, t)["status"] for t in toks]
    assert states.count("ACTIVATED") == 10 and states.count("EXPIRED") == 5
    # The first 15 in line were admitted, in order.
    assert all(s != "WAITING" for s in states[:15]) and all(s == "WAITING" for s in states[15:])


def test_idle_waiting_tokens_are_dropped_and_stop_counting(server):
    srv = room(server, "--queue-max-active", "1", "--queue-waiting-idle", "1s")
    a = enter(srv, 1)
    wait_for(lambda: poll(srv, a["token"])["status"] == "ACTIVATED", 5, what="admission")
    silent = enter(srv, 2)
    polled = enter(srv, 3)
    assert poll(srv, polled["token"])["position"] == 2
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.0:
        poll(srv, polled["token"])
        time.sleep(0.2)
    assert poll(srv, silent["token"])["status"] == "EXPIRED"
    assert poll(srv, polled["token"])["position"] == 1
    assert stats(srv)["waiting"] == 1


def test_active_tokens_expire_after_the_ttl(server):
    srv = room(server, "--queue-active-ttl", "1s")
    a = enter(srv, 1)
    wait_for(lambda: poll(srv, a["token"])["status"] == "ACTIVATED", 5, what="admission")
    assert srv.get("/api/v1/concerts/1/sessions", token=a["token"]).status == 200
    wait_for(lambda: poll(srv, a["token"])["status"] == "EXPIRED", 3, what="expiry")
    assert_error(srv.get("/api/v1/concerts/1/sessions", token=a["token"]), 403,
                 "TOKEN_NOT_ACTIVE")
    assert stats(srv)["active"] == 0


# --- admin ---------------------------------------------------------------------


def test_admin_changes_limits_at_run_time(server):
    srv = room(server, "--admin-key", KEY, "--queue-max-active", "2")
    toks = [enter(srv, u)["token"] for u in range(1, 6)]
    wait_for(lambda: stats(srv)["active"] == 2, 5, what="2 active")
    r = srv.put(ADMIN, {"maxActive": 4}, headers={"X-Admin-Key": KEY})
    body = assert_ok_json(r)
    assert body["maxActive"] == 4 and body["admitPerSec"] == 100, body
    wait_for(lambda: stats(srv)["active"] == 4, 5, what="4 active after raising the limit")
    r = srv.put(ADMIN, {"admitPerSec": 7, "maxActive": 5}, headers={"X-Admin-Key": KEY})
    assert assert_ok_json(r)["admitPerSec"] == 7
    wait_for(lambda: stats(srv)["active"] == 5, 5, what="5 active")
    assert [poll(srv, t)["status"] for t in toks] == ["ACTIVATED"] * 5


@pytest.mark.parametrize("headers", [{}, {"X-Admin-Key": "wrong"}, {"X-Admin-Key": KEY + "x"},
                                     {"X-Admin-Key": KEY[:-1]}, {"X-Admin-Key": ""}])
def test_admin_needs_the_right_key(server, headers):
    srv = room(server, "--admin-key", KEY)
    assert_error(srv.put(ADMIN, {"maxActive": 5}, headers=headers), 401, "UNAUTHORIZED")
    assert stats(srv)["maxActive"] == 1000


def test_admin_is_refused_without_a_configured_key(server):
    srv = room(server)
    assert_error(srv.put(ADMIN, {"maxActive": 5}, headers={"X-Admin-Key": ""}), 401,
                 "UNAUTHORIZED", "--admin-key")


@pytest.mark.parametrize("body,mention", [
    ({}, [("maxActive", "admitPerSec")]),
    ({"maxActive": 0}, "maxActive"),
    ({"maxActive": 10000001}, "maxActive"),
    ({"admitPerSec": 1000001}, "admitPerSec"),
    ({"admitPerSec": "5"}, "admitPerSec"),
    ({"maxActive": 5, "other": 1}, "other"),
    ("nope", "JSON"),
])
def test_admin_rejects_bad_bodies(server, body, mention):
    srv = room(server, "--admin-key", KEY)
    assert_error(srv.put(ADMIN, body, headers={"X-Admin-Key": KEY}), 400, "INVALID_REQUEST",
                 mention)
    s = stats(srv)
    assert s["maxActive"] == 1000 and s["admitPerSec"] == 100


# --- restarts ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_line_survives_a_restart(server, how):
    srv = room(server, "--queue-max-active", "2")
    got = [enter(srv, u) for u in range(1, 21)]
    wait_for(lambda: stats(srv)["active"] == 2, 5, what="2 active")
    before = {g["token"]: poll(srv, g["token"]) for g in got}
    if how == "sigterm":
        srv.signal(signal.SIGTERM)
        assert srv.proc.wait(10) == 0
    else:
        srv.allowed_signals.add(signal.SIGKILL)
        srv.signal(signal.SIGKILL)
        srv.proc.wait(10)
    again = server(args=["--queue-max-active", "2"], db_path=srv.db_path, do_seed=False,
                   tokens=False)
    for tok, b in before.items():
        a = poll(again, tok)
        assert (a["status"], a["position"], a["userId"]) == \
            (b["status"], b["position"], b["userId"]), (b, a)
    s = stats(again)
    assert s["active"] == 2 and s["waiting"] == 18, s
    # A newcomer lines up behind everyone who was there.
    assert enter(again, 500, 201)["position"] == 19


# --- the gate ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/concerts/1/sessions",
                                  "/api/v1/concerts/1/sessions/1/seats"])
def test_gate_on_protected_routes(server, path):
    srv = server(args=["--queue-max-active", "51"])  # users 1..50 hold seeded tokens
    assert_error(srv.get(path, token=None), 401, "TOKEN_MISSING")
    assert_error(srv.get(path, token="no-such-token"), 401, "TOKEN_INVALID")
    assert_error(srv.get(path, token="spaces are not allowed"), 401, "TOKEN_INVALID")
    first = enter(srv, 900)
    wait_for(lambda: poll(srv, first["token"])["status"] == "ACTIVATED", 5, what="admission")
    waiting = enter(srv, 901)
    assert waiting["status"] == "WAITING"
    assert_error(srv.get(path, token=waiting["token"]), 403, "TOKEN_NOT_ACTIVE")
    assert_ok_json(srv.get(path, token=first["token"]))
    assert_ok_json(srv.get(path, token=active_token(7)))
    assert srv.delete(Q, token=first["token"]).status == 204
    assert_error(srv.get(path, token=first["token"]), 403, "TOKEN_NOT_ACTIVE")
    # The concert list stays public.
    assert_ok_json(srv.get("/api/v1/concerts", token=None))


def test_seeded_tokens_are_activated_for_their_users(server):
    srv = server(seed=["--users", "5"])
    for u in range(1, 6):
        p = poll(srv, active_token(u))
        assert p["status"] == "ACTIVATED" and p["userId"] == u, p
    assert_error(srv.get(Q, token=active_token(6)), 401, "TOKEN_INVALID")
    # Entering as a seeded user returns the seeded token.
    assert enter(srv, 3, 200)["token"] == active_token(3)


def test_positions_exact_under_concurrent_enters_and_leaves(server):
    srv = room(server, "--queue-max-active", "5", "--queue-admit-per-sec", "100000")
    first = [enter(srv, u, 201) for u in range(1, 201)]
    leavers = [g["token"] for g in first[::3]]

    def leave(tok):
        r = srv.delete(Q, token=tok)
        assert r.status == 204, r

    with ThreadPoolExecutor(max_workers=32) as ex:
        joins = ex.map(lambda u: enter(srv, u, 201), range(201, 501))
        list(ex.map(leave, leavers))
        late = list(joins)
    wait_for(lambda: stats(srv)["active"] == 5, 5, what="5 active")
    tokens = [g["token"] for g in first + late]
    with ThreadPoolExecutor(max_workers=32) as ex:
        polled = list(ex.map(lambda t: poll(srv, t), tokens))
    by_status = {}
    for p in polled:
        by_status.setdefault(p["status"], []).append(p)
    assert len(by_status["EXPIRED"]) == len(leavers)
    assert len(by_status["ACTIVATED"]) == 5
    waiting = sorted(p["position"] for p in by_status["WAITING"])
    assert waiting == list(range(1, 500 - len(leavers) - 5 + 1)), "positions are not exact"
    # Arrival order is kept: among the first 200, positions follow entry order.
    firsts = [p["position"] for p in polled[:200] if p["status"] == "WAITING"]
    assert firsts == sorted(firsts)
    s = stats(srv)
    assert s["waiting"] == len(waiting) and s["active"] == 5, s
