"""The classic API (DESIGN.md 4.2, docs/classic-api.md): every route's
shape exactly, its refusals (4xx with a JSON error, never 5xx, nothing
changed), who the caller is and the gate by user id, and each behaviour of
the reference clients (clients.py) against a real concertd."""

import random

import pytest

from booking_util import Client, check_invariants, rows, scalar
from clients import (BALANCE_STEP, Log, classic_balance_user, classic_flow_user,
                     v1_booking_user, wait_active)
from conftest import JSON_CT, active_token, assert_error, assert_json_ct, assert_ok_json

TOKEN_KEYS = {"token", "userId", "status", "position"}
SCHEDULE_KEYS = {"scheduleId", "concertId", "startsAt", "availableSeats"}
SEAT_KEYS = {"seatId", "seatNumber", "grade", "price"}
HOLD_KEYS = {"reservationId", "status", "totalPrice", "expiresAt"}
PAYMENT_KEYS = {"paymentId", "reservationId", "amount", "status"}
BALANCE = 10_000_000  # seeded balance of users 1..50 in booking servers


def room(server, *args):
    """A server whose waiting room starts empty (nobody holds a token)."""
    return server(args=list(args), tokens=False)


def booking_server(server, *args, seed=()):
    """Demo catalog; users 1..50 with BALANCE won and an ACTIVATED token each."""
    return server(seed=["--users", "50", "--balance", str(BALANCE), *seed], args=list(args))


def enter(srv, uid, **kw):
    return assert_ok_json(srv.post("/api/token", {"userId": uid}, token=None, **kw))


def status_raw(srv, uid, **kw):
    r = srv.get(f"/api/token/status/{uid}", token=None, **kw)
    assert r.status == 200, r
    assert_json_ct(r)
    assert r.raw in (b"true", b"false"), f"body must be exactly true or false: {r.raw!r}"
    return r.raw


def reserve(srv, uid, seats, cid=1, sid=1, headers=None):
    return srv.post("/api/reservations/seats", {"userId": uid, "concertId": cid,
                                                "scheduleId": sid, "seatIdList": seats},
                    token=None, headers=headers)


def pay(srv, uid, rid, amount, headers=None):
    return srv.post("/api/reservations/payments",
                    {"userId": uid, "reservationId": rid, "amount": amount},
                    token=None, headers=headers)


def balance(srv, uid):
    return assert_ok_json(srv.get(f"/api/balance/{uid}", token=None))["amount"]


def state(db_path):
    """Everything a refused request must leave alone."""
    return (rows(db_path, "SELECT id, status, reservation_id FROM seats ORDER BY id"),
            rows(db_path, "SELECT * FROM reservations ORDER BY id"),
            rows(db_path, "SELECT * FROM payments ORDER BY id"),
            rows(db_path, "SELECT id, balance FROM users ORDER BY id"),
            rows(db_path, "SELECT * FROM balance_ledger ORDER BY id"))


def wait_for(cond, timeout=10.0, step=0.05):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return False


# --- the waiting room --------------------------------------------------------------------


def test_token_routes_shapes_and_status_body(server):
    srv = room(server, "--queue-max-active", "1", "--queue-admit-per-sec", "1000")
    first = enter(srv, 101)
    assert set(first) == TOKEN_KEYS, first
    assert first["userId"] == 101 and len(first["token"]) >= 22
    assert wait_for(lambda: status_raw(srv, 101) == b"true"), "user 101 was never admitted"
    second = enter(srv, "102")  # userId as a decimal string
    assert set(second) == TOKEN_KEYS and second["userId"] == 102, second
    assert second["status"] == "WAITING" and second["position"] == 1, second
    got = assert_ok_json(srv.get("/api/token/102", token=None))
    assert got == second, (got, second)
    act = assert_ok_json(srv.get("/api/token/101", token=None))
    assert act == {"token": first["token"], "userId": 101, "status": "ACTIVATED", "position": 0}
    # The status body is exactly true / false: no newline, no quotes, no object.
    assert status_raw(srv, 101) == b"true"
    assert status_raw(srv, 102) == b"false"
    assert status_raw(srv, 999) == b"false"  # no token at all
    r = srv.request("HEAD", "/api/token/status/101", token=None)
    assert r.status == 200 and r.headers["Content-Length"] == "4", r
    # Entering again while live: the same token, 200.
    r = srv.post("/api/token", {"userId": 102}, token=None)
    assert r.status == 200 and r.json == second, r
    assert_error(srv.get("/api/token/999", token=None), 404, "NOT_FOUND", "999")


def test_polling_status_until_true_admits_everyone_in_turn(server):
    srv = room(server, "--queue-admit-per-sec", "10")
    users = list(range(201, 221))
    for u in users:
        enter(srv, u)
    log, c = Log(), Client(srv)
    try:
        assert all(wait_active(c, u, log, poll_every=0.1, timeout=15) for u in users)
    finally:
        c.close()
    assert not log.non_2xx(), log.summary()
    assert log.count("status") > len(users), "nobody ever read false: no polling was tested"
    for u in users:
        assert assert_ok_json(srv.get(f"/api/token/{u}", token=None))["status"] == "ACTIVATED"


def test_polling_by_user_id_keeps_a_waiting_user_in_line(server):
    """The classic client polls by user id; that counts as a poll, so its
    WAITING token is not dropped as idle. A user who stops polling is."""
    import time
    srv = room(server, "--queue-max-active", "1", "--queue-waiting-idle", "1s")
    enter(srv, 1)
    assert wait_for(lambda: status_raw(srv, 1) == b"true")
    enter(srv, 2)
    enter(srv, 3)
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        assert status_raw(srv, 2) == b"false"
        time.sleep(0.2)
    got = assert_ok_json(srv.get("/api/token/2", token=None))
    assert got["status"] == "WAITING" and got["position"] == 1, got
    assert_error(srv.get("/api/token/3", token=None), 404, "NOT_FOUND")


@pytest.mark.parametrize("body,mention", [
    ({}, "userId"),
    ({"userId": 0}, "userId"),
    ({"userId": -1}, "userId"),
    ({"userId": "abc"}, "userId"),
    ({"userId": "12x"}, "userId"),
    ({"userId": 1.5}, "userId"),
    ({"userId": None}, "userId"),
    ({"userId": True}, "userId"),
    ({"userId": 1, "extra": 1}, "extra"),
    ([1], "object"),
    ("not json", "JSON"),
    ("", "empty"),
])
def test_token_enter_rejects_bad_bodies(shared_server, body, mention):
    assert_error(shared_server.post("/api/token", body, token=None), 400, "INVALID_REQUEST",
                 mention)


def test_token_paths_and_methods(shared_server):
    srv = shared_server
    for path in ("/api/token/abc", "/api/token/0", "/api/token/status/-3",
                 "/api/token/status/99999999999999999999"):
        assert_error(srv.get(path, token=None), 400, "INVALID_REQUEST", "userId")
    assert_error(srv.delete("/api/token", token=None), 405, "METHOD_NOT_ALLOWED")
    assert_error(srv.post("/api/token/5", {}, token=None), 405, "METHOD_NOT_ALLOWED")
    assert_error(srv.get("/api/token", token=None), 405, "METHOD_NOT_ALLOWED")


# --- who the caller is ------------------------------------------------------------------------


def test_caller_from_header_body_or_both(server):
    srv = room(server)
    # Header alone names the user; any letter case of the header name.
    r = srv.post("/api/token", {}, token=None, headers={"userId": "31"})
    assert assert_ok_json(r)["userId"] == 31
    r = srv.post("/api/token", {}, token=None, headers={"USERID": "32"})
    assert assert_ok_json(r)["userId"] == 32
    # Both, agreeing (number and string alike): fine.
    r = srv.post("/api/token", {"userId": "33"}, token=None, headers={"userId": "33"})
    assert assert_ok_json(r)["userId"] == 33
    # Both, differing: 403, and nobody entered.
    assert_error(srv.post("/api/token", {"userId": 34}, token=None, headers={"userId": "35"}),
                 403, "FORBIDDEN", ["34", "35"])
    assert_error(srv.get("/api/token/33", token=None, headers={"userId": "35"}),
                 403, "FORBIDDEN")
    assert_error(srv.get("/api/balance/33", token=None, headers={"userId": "35"}),
                 403, "FORBIDDEN")
    for uid in (34, 35):
        assert_error(srv.get(f"/api/token/{uid}", token=None), 404, "NOT_FOUND")
    # Neither: 400. A header that is no user id: 400.
    assert_error(srv.post("/api/token", {}, token=None), 400, "INVALID_REQUEST", "userId")
    for bad in ("abc", "0", "-2", "1.5", ""):
        assert_error(srv.post("/api/token", {"userId": 36}, token=None, headers={"userId": bad}),
                     400, "INVALID_REQUEST", "header")


# --- balances --------------------------------------------------------------------------------


def test_balance_read_and_charge_shapes(server):
    srv = room(server)
    r = srv.get("/api/balance/7", token=None)
    assert assert_ok_json(r) == {"userId": 7, "amount": 0}
    r = srv.put("/api/balance/charge", {"userId": 7, "amount": 6000}, token=None)
    assert assert_ok_json(r) == {"userId": 7, "amount": 6000}
    r = srv.put("/api/balance/charge", {"userId": "7", "amount": 1000}, token=None)
    assert assert_ok_json(r) == {"userId": 7, "amount": 7000}  # amount: the new balance
    r = srv.put("/api/balance/charge", {"amount": 3}, token=None, headers={"userId": "7"})
    assert assert_ok_json(r) == {"userId": 7, "amount": 7003}
    assert balance(srv, 7) == 7003
    # Same ledger as v1.
    assert assert_ok_json(srv.get("/api/v1/users/7/balance", token=None))["balance"] == 7003
    check_invariants(srv.db_path)


@pytest.mark.parametrize("body,mention", [
    ({"userId": 8}, "amount"),
    ({"userId": 8, "amount": 0}, "amount"),
    ({"userId": 8, "amount": -5}, "amount"),
    ({"userId": 8, "amount": "5"}, "amount"),
    ({"userId": 8, "amount": 1.5}, "amount"),
    ({"userId": 8, "amount": None}, "amount"),
    ({"userId": 8, "amount": 10_000_001}, "10000000"),
    ({"userId": 8, "amount": 9223372036854775808}, [("amount", "JSON")]),
    ({"amount": 5}, "userId"),
    ({"userId": "x", "amount": 5}, "userId"),
    ({"userId": 8, "amount": 5, "balance": 1}, "balance"),
    ("[]", "object"),
])
def test_charge_rejects_bad_bodies_and_changes_nothing(server, body, mention):
    srv = room(server)
    before = state(srv.db_path)
    assert_error(srv.put("/api/balance/charge", body, token=None), 400, "INVALID_REQUEST", mention)
    assert state(srv.db_path) == before


def test_balance_paths_and_methods(shared_server):
    srv = shared_server
    assert_error(srv.get("/api/balance/abc", token=None), 400, "INVALID_REQUEST", "userId")
    assert_error(srv.get("/api/balance/charge", token=None), 405, "METHOD_NOT_ALLOWED")
    assert_error(srv.post("/api/balance/charge", {"userId": 1, "amount": 1}, token=None),
                 405, "METHOD_NOT_ALLOWED")
    assert_error(srv.put("/api/balance/5", {"amount": 1}, token=None), 405, "METHOD_NOT_ALLOWED")


def test_balance_client_charges_last_read_plus_6000_until_the_limit(server):
    """The classic balance client sends amount = balance it read + 6000. The
    balance doubles each round; the charge past --max-charge is a 400 that
    changes nothing, never a 5xx."""
    srv = room(server)
    log, c = Log(), Client(srv)
    expect, rounds = 0, 0
    try:
        while True:
            got = classic_balance_user(c, 9, log)
            if got is None:
                break
            last, sent, new = got
            assert last == expect and sent == last + BALANCE_STEP and new == last + sent, got
            expect, rounds = new, rounds + 1
    finally:
        c.close()
    assert rounds == 11, (rounds, log.summary())  # 6000 * 2^11 > 10,000,000
    step, status, code, resp = log.entries[-1]
    assert (step, status, code) == ("charge", 400, "INVALID_REQUEST"), log.entries[-1]
    assert "10000000" in resp.json["error"]["message"]
    assert not log.failures()
    assert balance(srv, 9) == expect
    check_invariants(srv.db_path)


def test_balance_client_meets_overflow_as_a_400(server):
    srv = server(args=["--max-charge", "9223372036854775807"], tokens=False)
    log, c = Log(), Client(srv)
    expect = 0
    try:
        for _ in range(100):
            got = classic_balance_user(c, 10, log)
            if got is None:
                break
            expect = got[2]
    finally:
        c.close()
    step, status, code, resp = log.entries[-1]
    assert (step, status, code) == ("charge", 400, "INVALID_REQUEST"), log.summary()
    assert "overflow" in resp.json["error"]["message"]
    assert not log.failures()
    assert balance(srv, 10) == expect and expect > 2 ** 62
    check_invariants(srv.db_path)


# --- the catalog ------------------------------------------------------------------------------


def test_concerts_is_a_bare_array_of_the_v1_concerts(shared_server):
    srv = shared_server
    got = assert_ok_json(srv.get("/api/concerts", token=None))
    assert isinstance(got, list) and len(got) == 3
    assert all(set(c) == {"concertId", "title", "venue"} for c in got), got
    assert got == assert_ok_json(srv.get("/api/v1/concerts"))["concerts"]


def test_schedules_are_the_v1_sessions(shared_server):
    srv = shared_server
    got = assert_ok_json(srv.get("/api/concerts/schedules/2", token=None))
    assert isinstance(got, list) and len(got) == 4
    assert all(set(s) == SCHEDULE_KEYS and s["concertId"] == 2 for s in got), got
    v1 = assert_ok_json(srv.get("/api/v1/concerts/2/sessions"))["sessions"]
    assert [(s["scheduleId"], s["startsAt"], s["availableSeats"]) for s in got] == \
        [(s["sessionId"], s["startsAt"], s["availableSeats"]) for s in v1]
    assert_error(srv.get("/api/concerts/schedules/99", token=None), 404, "NOT_FOUND", "99")
    assert_error(srv.get("/api/concerts/schedules/x", token=None), 400, "INVALID_REQUEST")


def test_seats_are_a_bare_array_numbered_and_paged(shared_server):
    srv = shared_server
    got = assert_ok_json(srv.get("/api/concerts/seats/5", token=None))
    assert isinstance(got, list) and len(got) == 50  # default size 100 > 50 seats
    assert all(set(s) == SEAT_KEYS for s in got), got[0]
    assert [s["seatId"] for s in got] == list(range(1, 51))  # seatId is the seat number
    assert all(s["seatId"] == s["seatNumber"] for s in got)
    v1 = assert_ok_json(srv.get("/api/v1/concerts/2/sessions/5/seats"))["availableSeats"]
    assert [(s["seatNumber"], s["grade"], s["price"]) for s in got] == \
        [(s["seatNumber"], s["grade"], s["price"]) for s in v1]
    assert v1[0]["seatId"] != 1  # session 5's global seat ids are not its numbers
    page = lambda q: [s["seatId"] for s in assert_ok_json(  # noqa: E731
        srv.get(f"/api/concerts/seats/5?{q}", token=None))]
    assert page("size=10") == list(range(1, 11))
    assert page("page=0&size=10") == list(range(1, 11))
    assert page("page=1&size=10") == list(range(11, 21))
    assert page("page=4&size=12") == [49, 50]
    assert page("page=5&size=10") == []
    assert page("page=100000&size=1000") == []
    assert page("size=1000") == list(range(1, 51))


@pytest.mark.parametrize("query,mention", [
    ("page=-1", "page"), ("page=abc", "page"), ("page=1.5", "page"), ("page=", "page"),
    ("page=100001", "page"), ("size=0", "size"), ("size=1001", "size"), ("size=-5", "size"),
    ("size=ten", "size"), ("size=99999999999999999999", "size"),
])
def test_seat_page_rejects_bad_paging(shared_server, query, mention):
    assert_error(shared_server.get(f"/api/concerts/seats/1?{query}", token=None), 400,
                 "INVALID_REQUEST", mention)


def test_seat_page_of_unknown_schedule(shared_server):
    assert_error(shared_server.get("/api/concerts/seats/999", token=None), 404, "NOT_FOUND", "999")
    assert_error(shared_server.get("/api/concerts/seats/0", token=None), 400, "INVALID_REQUEST")


# --- reservations and payments ----------------------------------------------------------------


def test_reserve_then_pay_shapes_and_effects(server):
    srv = booking_server(server)
    r = reserve(srv, 5, [3, 4], sid=2)
    hold = assert_ok_json(r)
    assert set(hold) == HOLD_KEYS and hold["status"] == "HELD", hold
    assert hold["expiresAt"].endswith("Z")
    seats = rows(srv.db_path, "SELECT seat_number, price, status FROM seats"
                 " WHERE reservation_id = ? ORDER BY seat_number", hold["reservationId"])
    assert [s[0] for s in seats] == [3, 4] and all(s[2] == 1 for s in seats), seats
    assert hold["totalPrice"] == sum(s[1] for s in seats)
    listed = [s["seatId"] for s in assert_ok_json(srv.get("/api/concerts/seats/2", token=None))]
    assert 3 not in listed and 4 not in listed and len(listed) == 48
    r = pay(srv, 5, hold["reservationId"], hold["totalPrice"])
    paid = assert_ok_json(r)
    assert set(paid) == PAYMENT_KEYS, paid
    assert paid["reservationId"] == hold["reservationId"] and paid["status"] == "COMPLETED"
    assert paid["amount"] == hold["totalPrice"]
    assert balance(srv, 5) == BALANCE - hold["totalPrice"]
    assert scalar(srv.db_path, "SELECT status FROM reservations WHERE id = ?",
                  hold["reservationId"]) == "CONFIRMED"
    # Paying expired the user's token: status false, no live token, no more holds.
    assert status_raw(srv, 5) == b"false"
    assert_error(srv.get("/api/token/5", token=None), 404, "NOT_FOUND")
    assert_error(reserve(srv, 5, [9], sid=2), 401, "TOKEN_MISSING", "user 5")
    assert_error(pay(srv, 5, hold["reservationId"], hold["totalPrice"]), 401, "TOKEN_MISSING")
    check_invariants(srv.db_path)


def test_reserve_with_userid_as_string_or_header(server):
    srv = booking_server(server)
    r = reserve(srv, "6", [1])
    assert assert_ok_json(r)["status"] == "HELD"
    r = srv.post("/api/reservations/seats", {"concertId": 1, "scheduleId": 1, "seatIdList": [2]},
                 token=None, headers={"userId": "7"})
    rid = assert_ok_json(r)["reservationId"]
    assert scalar(srv.db_path, "SELECT user_id FROM reservations WHERE id = ?", rid) == 7
    assert_error(reserve(srv, 6, [3], headers={"userId": "7"}), 403, "FORBIDDEN")


BAD_RESERVATIONS = [
    ({"concertId": 1, "scheduleId": 1, "seatIdList": [1]}, "userId"),
    ({"userId": 1, "scheduleId": 1, "seatIdList": [1]}, "concertId"),
    ({"userId": 1, "concertId": 1, "seatIdList": [1]}, "scheduleId"),
    ({"userId": 1, "concertId": 1, "scheduleId": 1}, "seatIdList"),
    ({"userId": 1, "concertId": 1, "scheduleId": 1, "seatIdList": []}, "1 to 4"),
    ({"userId": 1, "concertId": 1, "scheduleId": 1, "seatIdList": [1, 2, 3, 4, 5]}, "1 to 4"),
    ({"userId": 1, "concertId": 1, "scheduleId": 1, "seatIdList": [2, 2]}, "more than once"),
    ({"userId": 1, "concertId": 1, "scheduleId": 1, "seatIdList": [0]}, "seatIdList[0]"),
    ({"userId": 1, "concertId": 1, "scheduleId": 1, "seatIdList": ["1"]}, "seatIdList[0]"),
    ({"userId": 1, "concertId": 1, "scheduleId": 1, "seatIdList": "1,2"}, "seatIdList"),
    ({"userId": 1, "concertId": "1", "scheduleId": 1, "seatIdList": [1]}, "concertId"),
    ({"userId": 1, "concertId": 1, "scheduleId": 0, "seatIdList": [1]}, "scheduleId"),
    ({"userId": 1, "concertId": 1, "scheduleId": 1, "seatIdList": [1], "x": 1}, "x"),
    ({"userId": 1.5, "concertId": 1, "scheduleId": 1, "seatIdList": [1]}, "userId"),
    ("not json", "JSON"),
]


@pytest.mark.parametrize("body,mention", BAD_RESERVATIONS)
def test_bad_reservation_is_400_and_changes_nothing(server, body, mention):
    srv = booking_server(server)
    before = state(srv.db_path)
    assert_error(srv.post("/api/reservations/seats", body, token=None), 400, "INVALID_REQUEST",
                 mention)
    assert state(srv.db_path) == before


def test_reservation_refusals_change_nothing(server):
    srv = booking_server(server)
    held = assert_ok_json(reserve(srv, 1, [10]))
    before = state(srv.db_path)
    assert_error(reserve(srv, 2, [10]), 409, "SEAT_UNAVAILABLE", ["number 10", "held"])
    assert_error(reserve(srv, 2, [11, 10]), 409, "SEAT_UNAVAILABLE", "number 10")
    assert_error(reserve(srv, 2, [11, 51]), 404, "NOT_FOUND", "seat number 51")
    assert_error(reserve(srv, 2, [11], cid=2, sid=1), 404, "NOT_FOUND", "session 1")
    assert_error(reserve(srv, 2, [11], sid=999), 404, "NOT_FOUND", "999")
    assert_error(reserve(srv, 999, [11]), 401, "TOKEN_MISSING", "user 999")
    assert state(srv.db_path) == before
    assert held["status"] == "HELD"


def test_waiting_user_may_not_reserve_or_pay(server):
    srv = room(server, "--queue-max-active", "1")
    enter(srv, 61)
    assert wait_for(lambda: status_raw(srv, 61) == b"true")
    enter(srv, 62)  # WAITING behind 61
    before = state(srv.db_path)
    assert_error(reserve(srv, 62, [1]), 403, "TOKEN_NOT_ACTIVE", "62")
    assert_error(pay(srv, 62, 1, 1000), 403, "TOKEN_NOT_ACTIVE")
    assert state(srv.db_path) == before


def test_payment_refusals_pay_nothing(server):
    srv = booking_server(server)
    hold = assert_ok_json(reserve(srv, 11, [20, 21]))
    rid, price = hold["reservationId"], hold["totalPrice"]
    before = state(srv.db_path)
    assert_error(pay(srv, 11, rid, price - 1), 409, "AMOUNT_MISMATCH",
                 [str(price - 1), str(price)])
    assert_error(pay(srv, 11, rid, price + 1), 409, "AMOUNT_MISMATCH")
    assert_error(pay(srv, 11, rid, 0), 409, "AMOUNT_MISMATCH")
    assert_error(pay(srv, 12, rid, price), 403, "FORBIDDEN", str(rid))
    assert_error(pay(srv, 11, 9999, price), 404, "NOT_FOUND", "9999")
    for body, mention in [({"userId": 11, "amount": price}, "reservationId"),
                          ({"userId": 11, "reservationId": None, "amount": price},
                           "reservationId"),
                          ({"userId": 11, "reservationId": "1", "amount": price},
                           "reservationId"),
                          ({"userId": 11, "reservationId": rid}, "amount"),
                          ({"userId": 11, "reservationId": rid, "amount": -1}, "amount"),
                          ({"userId": 11, "reservationId": rid, "amount": "5"}, "amount"),
                          ({"reservationId": rid, "amount": price}, "userId"),
                          ({"userId": 11, "reservationId": rid, "amount": price,
                            "method": "card"}, "method")]:
        assert_error(srv.post("/api/reservations/payments", body, token=None), 400,
                     "INVALID_REQUEST", mention)
    assert_error(pay(srv, 11, rid, price, headers={"userId": "12"}), 403, "FORBIDDEN")
    assert state(srv.db_path) == before
    assert status_raw(srv, 11) == b"true"  # the refusals left the token alone
    paid = assert_ok_json(pay(srv, 11, rid, price))
    assert paid["amount"] == price


def test_payment_with_insufficient_balance_is_402(server):
    srv = server(seed=["--users", "50", "--balance", "1000"])
    hold = assert_ok_json(reserve(srv, 13, [1]))
    before = state(srv.db_path)
    assert_error(pay(srv, 13, hold["reservationId"], hold["totalPrice"]), 402,
                 "INSUFFICIENT_BALANCE")
    assert state(srv.db_path) == before
    assert status_raw(srv, 13) == b"true"


def test_payment_retry_with_idempotency_key_replays_after_the_token_is_gone(server):
    srv = booking_server(server)
    hold = assert_ok_json(reserve(srv, 14, [30]))
    h = {"Idempotency-Key": "classic-pay-14"}
    first = pay(srv, 14, hold["reservationId"], hold["totalPrice"], headers=h)
    assert_ok_json(first)
    again = pay(srv, 14, hold["reservationId"], hold["totalPrice"], headers=h)
    assert again.status == 200 and again.raw == first.raw, again
    assert again.headers["Idempotent-Replayed"] == "true"
    assert balance(srv, 14) == BALANCE - hold["totalPrice"]
    # Without the key the token's absence is the answer.
    assert_error(pay(srv, 14, hold["reservationId"], hold["totalPrice"]), 401, "TOKEN_MISSING")
    check_invariants(srv.db_path)


# --- the reference clients ------------------------------------------------------------------


def test_v1_booking_client_pays_even_after_a_failed_hold(server):
    """The first report's client pays with the reservationId of the hold's
    response, and pays even when the hold failed: then it sends no
    reservationId, which is a 400 (never a 500) and pays nothing."""
    srv = booking_server(server, seed=["--concerts", "1", "--sessions-per-concert", "1",
                                       "--seats-per-session", "1"])
    log, c = Log(), Client(srv)
    try:
        hold, paid = v1_booking_user(c, 15, random.Random(1), log)
        assert hold.status == 201 and paid.status == 201, log.summary()
        before = state(srv.db_path)
        # The only seat is sold: the next user's seat list is empty, so take
        # the seat id the first one held, as a client with a stale list would.
        seat = hold.json["seats"][0]["seatId"]
        r = log.add("hold", c.request("POST", "/api/v1/concerts/1/sessions/1/reservations",
                                      {"userId": 16, "seatIds": [seat]},
                                      headers={"QUEUE-TOKEN": active_token(16)}))
        assert_error(r, 409, "SEAT_UNAVAILABLE")
        r = log.add("pay", c.request("POST", "/api/v1/payments", {"userId": 16},
                                     headers={"QUEUE-TOKEN": active_token(16)}))
        assert_error(r, 400, "INVALID_REQUEST", "reservationId")
        r = c.request("POST", "/api/v1/payments", {"userId": 16, "reservationId": None},
                      headers={"QUEUE-TOKEN": active_token(16)})
        assert_error(r, 400, "INVALID_REQUEST", "reservationId")
        assert state(srv.db_path) == before
    finally:
        c.close()
    assert not log.failures()


def test_v1_booking_client_random_picks(server):
    srv = booking_server(server)
    log, c = Log(), Client(srv)
    rng = random.Random(7)
    try:
        for uid in range(20, 30):
            hold, paid = v1_booking_user(c, uid, rng, log)
            assert hold.status == 201 and paid.status == 201, log.summary()
            assert 1 <= len(hold.json["seats"]) <= 2
            assert paid.json["reservationId"] == hold.json["reservationId"]
    finally:
        c.close()
    assert not log.non_2xx(), log.summary()
    check_invariants(srv.db_path)


def test_classic_flow_client_end_to_end(server):
    srv = server(seed=["--users", "50", "--balance", str(BALANCE)], tokens=False,
                 args=["--queue-admit-per-sec", "20"])
    log, c = Log(), Client(srv)
    rng = random.Random(3)
    try:
        for uid in (1, 2, 3):
            r = classic_flow_user(c, uid, rng, log, poll_every=0.05, uid_as_string=uid == 2)
            assert r is not None and r.status == 200, log.summary()
            assert set(r.json) == PAYMENT_KEYS
    finally:
        c.close()
    assert not log.non_2xx(), log.summary()
    assert log.count("pay", 200) == 3
    check_invariants(srv.db_path)


def test_classic_routes_answer_json_with_the_right_content_type(shared_server):
    srv = shared_server
    for path in ("/api/concerts", "/api/concerts/schedules/1", "/api/concerts/seats/1",
                 "/api/balance/1", "/api/token/status/1"):
        r = srv.get(path, token=None)
        assert r.status == 200 and r.headers["Content-Type"] == JSON_CT, (path, r)
