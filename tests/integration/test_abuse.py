"""Abuse limits (docs/security.md): token buckets per client address and per
user on entering the waiting room and on holds (429 RATE_LIMITED with
Retry-After), the cap on live holds per user (409 TOO_MANY_HOLDS), and the
request deadline that cuts slow clients (slowloris)."""

import json
import socket
import time

from booking_util import auth, check_invariants, hold, race, rows, sessions_of, seats_of
from conftest import assert_error, assert_ok_json, read_response
from security_util import assert_unchanged, state


def enter(srv, uid, classic=False):
    if classic:
        return srv.post("/api/token", {"userId": uid}, token=None)
    return srv.post("/api/v1/waiting-queues", {"userId": uid}, token=None)


def stats(srv):
    return assert_ok_json(srv.get("/api/v1/waiting-queues/stats", token=None))


def assert_limited(r, mentions):
    assert_error(r, 429, "RATE_LIMITED", mentions)
    retry = int(r.headers.get("Retry-After", "0"))
    assert 1 <= retry <= 60, r


def test_entering_is_limited_per_user_on_both_apis(server):
    srv = server(args=["--limit-enter-user", "1", "--limit-burst", "2",
                       "--queue-max-active", "1"], seed=["--users", "0"])
    assert enter(srv, 700).status == 201
    assert enter(srv, 700, classic=True).status == 200
    before = stats(srv)
    assert_limited(enter(srv, 700), "user")
    assert_limited(enter(srv, 700, classic=True), "user")
    assert stats(srv)["waiting"] + stats(srv)["active"] == before["waiting"] + before["active"]
    # Another user is not held up by user 700's empty bucket.
    assert enter(srv, 701).status == 201
    time.sleep(1.05)  # one token a second
    assert enter(srv, 700).status == 200


def test_entering_is_limited_per_address(server):
    srv = server(args=["--limit-enter-ip", "1", "--limit-burst", "3",
                       "--queue-max-active", "1"], seed=["--users", "0"])
    got = [enter(srv, 800 + i).status for i in range(3)]
    assert got == [201, 201, 201]
    r = enter(srv, 803)
    assert_limited(r, "address")
    s = stats(srv)
    assert s["waiting"] + s["active"] == 3  # user 803 never got in


def test_holds_are_limited_per_user_and_leave_seats_alone(server):
    srv = server(args=["--limit-hold-user", "1", "--limit-burst", "1"])
    sid = sessions_of(srv, 1)[0]["sessionId"]
    free = [s["seatId"] for s in seats_of(srv, 1, sid)[:2]]
    assert hold(srv, 3, 1, sid, [free[0]]).status == 201
    before = state(srv.db_path)
    assert_limited(hold(srv, 3, 1, sid, [free[1]]), "user")
    r = srv.request("POST", "/api/reservations/seats",
                    {"userId": 3, "concertId": 1, "scheduleId": sid, "seatIdList": [49]},
                    token=None)
    assert_limited(r, "user")
    assert_unchanged(before, state(srv.db_path))
    assert hold(srv, 4, 1, sid, [free[1]]).status == 201  # someone else may hold


def test_holds_are_limited_per_address(server):
    srv = server(args=["--limit-hold-ip", "1", "--limit-burst", "2"])
    sid = sessions_of(srv, 1)[0]["sessionId"]
    free = [s["seatId"] for s in seats_of(srv, 1, sid)[:3]]
    assert [hold(srv, 5 + i, 1, sid, [free[i]]).status for i in range(2)] == [201, 201]
    before = state(srv.db_path)
    assert_limited(hold(srv, 7, 1, sid, [free[2]]), "address")
    assert_unchanged(before, state(srv.db_path))


def test_live_holds_per_user_are_capped(server):
    srv = server(args=["--max-live-holds", "2"])
    sid = sessions_of(srv, 1)[0]["sessionId"]
    free = [s["seatId"] for s in seats_of(srv, 1, sid)[:4]]
    rids = [assert_ok_json(hold(srv, 9, 1, sid, [free[i]]), 201)["reservationId"]
            for i in range(2)]
    before = state(srv.db_path)
    assert_error(hold(srv, 9, 1, sid, [free[2]]), 409, "TOO_MANY_HOLDS", "2 live holds")
    r = srv.request("POST", "/api/reservations/seats",
                    {"userId": 9, "concertId": 1, "scheduleId": sid, "seatIdList": [50]},
                    token=None)
    assert_error(r, 409, "TOO_MANY_HOLDS")
    assert_unchanged(before, state(srv.db_path))
    assert hold(srv, 10, 1, sid, [free[2]]).status == 201  # the cap is per user
    assert srv.delete(f"/api/v1/reservations/{rids[0]}", headers=auth(9)).status == 200
    assert hold(srv, 9, 1, sid, [free[3]]).status == 201  # a cancelled hold frees a place


def test_the_cap_holds_under_concurrent_holds(server):
    """The count is taken inside the hold's transaction: 40 holds of one user
    at the same instant, on 40 different seats, leave exactly the cap."""
    srv = server(args=["--max-live-holds", "3", "--limit-hold-user", "0"])
    sid = sessions_of(srv, 1)[0]["sessionId"]
    free = [s["seatId"] for s in seats_of(srv, 1, sid)[:40]]
    results = race(40, lambda i: hold(srv, 12, 1, sid, [free[i]]))
    got = sorted(r.status for r in results)
    assert got == [201] * 3 + [409] * 37, got
    assert all(r.json["error"]["code"] == "TOO_MANY_HOLDS" for r in results if r.status == 409)
    assert rows(srv.db_path, "SELECT count(*) FROM reservations WHERE user_id = 12")[0][0] == 3
    check_invariants(srv.db_path)


def test_expired_holds_do_not_count_against_the_cap(server):
    srv = server(args=["--max-live-holds", "1", "--hold-ttl", "1s"])
    sid = sessions_of(srv, 1)[0]["sessionId"]
    free = [s["seatId"] for s in seats_of(srv, 1, sid)[:2]]
    assert hold(srv, 11, 1, sid, [free[0]]).status == 201
    assert_error(hold(srv, 11, 1, sid, [free[1]]), 409, "TOO_MANY_HOLDS")
    time.sleep(1.2)
    assert hold(srv, 11, 1, sid, [free[1]]).status == 201


# ---- behind a proxy (--trusted-proxies) ------------------------------------------


def enter_via(srv, uid, xff=None):
    """Enters uid with an X-Forwarded-For header (when given), as a proxy
    (or a client pretending to be one) would send it."""
    headers = {"X-Forwarded-For": xff} if xff is not None else {}
    return srv.post("/api/v1/waiting-queues", {"userId": uid}, headers=headers, token=None)


def test_forwarded_for_from_an_untrusted_peer_is_ignored(server):
    """A client that is not a trusted proxy cannot pick its own address
    bucket by sending X-Forwarded-For: every request is its own address's."""
    srv = server(args=["--limit-enter-ip", "1", "--limit-burst", "2", "--queue-max-active", "1",
                       "--trusted-proxies", "10.0.0.0/8, 192.0.2.1"], seed=["--users", "0"])
    assert enter_via(srv, 900, "203.0.113.1").status == 201
    assert enter_via(srv, 901, "203.0.113.2").status == 201
    assert_limited(enter_via(srv, 902, "203.0.113.3"), "address")
    assert_limited(enter_via(srv, 903, "10.0.0.1"), "address")
    assert_limited(enter_via(srv, 904), "address")


def test_a_trusted_proxy_gives_each_forwarded_client_its_own_bucket(server):
    """From a trusted proxy (here loopback, set through the environment) the
    client is the rightmost address of X-Forwarded-For the proxy did not
    vouch for: two clients behind one proxy are limited apart, and what a
    client writes left of the proxy's entry changes nothing."""
    srv = server(args=["--limit-enter-ip", "1", "--limit-burst", "2", "--queue-max-active", "1"],
                 env={"CONCERT_TRUSTED_PROXIES": "127.0.0.0/8, 10.0.0.0/8"},
                 seed=["--users", "0"])
    a, b = "203.0.113.1", "203.0.113.2"
    assert enter_via(srv, 910, a).status == 201
    assert enter_via(srv, 911, f"198.51.100.9, {a}").status == 201
    # a's bucket is empty, however a dresses its header up
    assert_limited(enter_via(srv, 912, a), "address")
    assert_limited(enter_via(srv, 913, f"{b}, {a}"), "address")
    assert_limited(enter_via(srv, 914, f"{b}, {a}, 10.9.9.9"), "address")  # past a trusted hop
    assert_limited(enter_via(srv, 915, f"  {a} "), "address")
    # b, behind the same proxy, is not held up; nor is the proxy's own address
    assert enter_via(srv, 916, b).status == 201
    assert enter_via(srv, 917, f"{a}, 10.1.1.1, {b}").status == 201
    assert_limited(enter_via(srv, 918, b), "address")
    assert enter_via(srv, 919).status == 201   # no header: the proxy itself
    # several X-Forwarded-For headers are one list, in order
    assert raw_enter(srv, 920, ["198.51.100.1", a]).status == 429
    assert raw_enter(srv, 921, [a, "198.51.100.77"]).status == 201
    s = stats(srv)
    assert s["waiting"] + s["active"] == 6


def raw_enter(srv, uid, forwarded):
    """Enters uid with one X-Forwarded-For header per entry of forwarded."""
    body = json.dumps({"userId": uid}).encode()
    head = "".join(f"X-Forwarded-For: {v}\r\n" for v in forwarded)
    return srv.raw(f"POST /api/v1/waiting-queues HTTP/1.1\r\nHost: x\r\n{head}"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                   .encode() + body)


def test_a_trusted_proxy_keys_holds_on_the_forwarded_client(server):
    srv = server(args=["--limit-hold-ip", "1", "--limit-burst", "1",
                       "--trusted-proxies", "127.0.0.1"])
    sid = sessions_of(srv, 1)[0]["sessionId"]
    free = [s["seatId"] for s in seats_of(srv, 1, sid)[:3]]

    def hold_via(uid, seat, xff):
        return srv.post(f"/api/v1/concerts/1/sessions/{sid}/reservations",
                        {"userId": uid, "seatIds": [seat]},
                        headers={**auth(uid), "X-Forwarded-For": xff})
    assert hold_via(20, free[0], "2001:db8:1:2::1").status == 201
    before = state(srv.db_path)
    # the same /64: the same subscriber, refused
    assert_limited(hold_via(21, free[1], "2001:db8:1:2::99"), "address")
    assert_unchanged(before, state(srv.db_path))
    assert hold_via(22, free[1], "2001:db8:1:3::1").status == 201


# ---- slow clients ----------------------------------------------------------------


def closed_within(sock, seconds, drip=None):
    """Drips drip (bytes, one every 0.25 s) into sock until the server closes
    it; returns how long that took, or None when it was still open after
    seconds."""
    start = time.monotonic()
    sock.settimeout(0.25)
    i = 0
    while time.monotonic() - start < seconds:
        try:
            if drip is not None:
                sock.sendall(drip[i % len(drip):i % len(drip) + 1])
                i += 1
            data = sock.recv(4096)
            if not data:
                return time.monotonic() - start
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - start
    return None


def test_slowloris_headers_are_cut_off(server):
    srv = server(args=["--request-timeout", "2s", "--connection-timeout", "60s"])
    s = socket.create_connection(("127.0.0.1", srv.port))
    try:
        s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        took = closed_within(s, 8, drip=b"X-Slow-Header: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n")
    finally:
        s.close()
    assert took is not None, "a client dripping headers for 8 s was never cut off"
    assert took < 5, took
    srv.assert_live("after a slowloris")


def test_slow_body_is_cut_off(server):
    srv = server(args=["--request-timeout", "2s", "--connection-timeout", "60s"])
    s = socket.create_connection(("127.0.0.1", srv.port))
    try:
        s.sendall(b"POST /api/v1/waiting-queues HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n")
        took = closed_within(s, 8, drip=b" ")
    finally:
        s.close()
    assert took is not None and took < 5, took


def test_silent_connection_is_cut_at_the_request_timeout(server):
    srv = server(args=["--request-timeout", "2s", "--connection-timeout", "60s"])
    s = socket.create_connection(("127.0.0.1", srv.port))
    try:
        took = closed_within(s, 8)
    finally:
        s.close()
    assert took is not None and 1.5 < took < 5, took


def test_idle_keep_alive_between_requests_is_not_cut(server):
    """The deadline runs while a request is arriving, not while a kept-alive
    connection waits for the next one (the idle timeout covers that)."""
    srv = server(args=["--request-timeout", "1s", "--connection-timeout", "60s"])
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    try:
        req = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
        s.sendall(req)
        assert read_response(s)[0].status == 200
        time.sleep(2.5)
        s.sendall(req)
        assert read_response(s)[0].status == 200
    finally:
        s.close()


def test_slow_clients_do_not_block_others(server):
    srv = server(args=["--request-timeout", "3s", "--workers", "2"])
    socks = []
    try:
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", srv.port))
            s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-A: ")
            socks.append(s)
        t = time.monotonic()
        assert srv.get("/health/live", token=None).status == 200
        assert time.monotonic() - t < 1.0
    finally:
        for s in socks:
            s.close()
