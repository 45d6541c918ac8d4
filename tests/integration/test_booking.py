"""Holds (DESIGN.md 3 and 4.1): all-or-nothing holds of 1..max_seats_per_hold
seats, reading and cancelling them, their expiry, and invariant 1 (a seat
is in at most one live hold) under 500 racing clients. Every request sends
auth(uid) (booking_util), where the waiting-room gate will plug in. The
database is checked afterwards with sqlite3 (booking_util.check_invariants)."""

import random
import time
from datetime import datetime, timezone

import pytest

from booking_util import (SEATS, auth, reactivate, check_invariants, hold, pay, race, rows, scalar,
                          seats_of, sessions_of)
from conftest import assert_error, assert_ok_json


def first_session(srv, cid=1):
    return sessions_of(srv, cid)[0]["sessionId"]


def seat_ids(srv, cid, sid, numbers):
    by_number = {s["seatNumber"]: s["seatId"] for s in seats_of(srv, cid, sid)}
    return [by_number[n] for n in numbers]


def parse_time(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def snapshot(path):
    """Everything a hold may change, to prove a refused one changed nothing."""
    return (rows(path, "SELECT id, status, reservation_id FROM seats ORDER BY id"),
            rows(path, "SELECT id, available_seats FROM sessions ORDER BY id"),
            rows(path, "SELECT * FROM reservations ORDER BY id"),
            rows(path, "SELECT * FROM reservation_seats ORDER BY 1, 2"),
            rows(path, "SELECT * FROM users ORDER BY id"))


# --- a hold ----------------------------------------------------------------------


def test_hold_answers_201_with_seats_total_and_expiry(server):
    srv = server()
    sid = first_session(srv)
    ids = seat_ids(srv, 1, sid, [12, 3])
    t0 = time.time()
    r = hold(srv, 7, 1, sid, ids)
    body = assert_ok_json(r, 201)
    assert set(body) == {"reservationId", "userId", "sessionId", "seats", "totalPrice", "status",
                         "expiresAt"}, body
    assert body["userId"] == 7 and body["sessionId"] == sid and body["status"] == "HELD"
    assert isinstance(body["reservationId"], int) and body["reservationId"] > 0
    assert [s["seatNumber"] for s in body["seats"]] == [3, 12]
    assert body["seats"][0] == {"seatId": ids[1], "seatNumber": 3, "grade": "VIP",
                                "price": 150000}
    assert body["seats"][1] == {"seatId": ids[0], "seatNumber": 12, "grade": "R", "price": 120000}
    assert body["totalPrice"] == 270000
    assert abs(parse_time(body["expiresAt"]) - (t0 + 300)) <= 2, body["expiresAt"]
    check_invariants(srv.db_path)


def test_held_seats_leave_the_seat_page_and_the_session_counter(server):
    srv = server()
    sid = first_session(srv, 2)
    ids = seat_ids(srv, 2, sid, [1, 2, 50])
    assert_ok_json(hold(srv, 3, 2, sid, ids), 201)
    left = [s["seatNumber"] for s in seats_of(srv, 2, sid)]
    assert left == list(range(3, 50)), left
    counts = {s["sessionId"]: s["availableSeats"] for s in sessions_of(srv, 2)}
    assert counts[sid] == SEATS - 3
    assert sorted(counts.values()) == [SEATS - 3, SEATS, SEATS, SEATS]
    check_invariants(srv.db_path)


def test_session_counter_follows_every_change_at_once(server):
    # Between writes the sessions list is served from memory (api/concerts.c);
    # every committed hold, cancel, payment and expiry must show at once.
    srv = server(args=["--hold-ttl", "3s"])
    sid = first_session(srv, 3)

    def available(reads=3):
        counts = [{s["sessionId"]: s["availableSeats"] for s in sessions_of(srv, 3)}
                  for _ in range(reads)]  # repeated reads: the cached answer
        assert all(c == counts[0] for c in counts), counts
        return counts[0][sid]

    assert available() == SEATS
    rid = assert_ok_json(hold(srv, 6, 3, sid, seat_ids(srv, 3, sid, [1, 2])), 201)["reservationId"]
    assert available() == SEATS - 2
    assert srv.delete(f"/api/v1/reservations/{rid}", headers=auth(6)).status == 200
    assert available() == SEATS
    assert_ok_json(srv.post("/api/v1/users/6/balance/charge", {"amount": 1000000}, token=None))
    rid = assert_ok_json(hold(srv, 6, 3, sid, seat_ids(srv, 3, sid, [3])), 201)["reservationId"]
    assert_ok_json(pay(srv, 6, rid), 201)
    assert available() == SEATS - 1
    assert_ok_json(hold(srv, 7, 3, sid, seat_ids(srv, 3, sid, [4, 5, 6])), 201)
    assert available() == SEATS - 4
    deadline = time.monotonic() + 6.0
    while available(reads=1) != SEATS - 1:  # the sweeper gives the three back, any moment
        assert time.monotonic() < deadline, "expired hold's seats not counted back"
        time.sleep(0.05)
    check_invariants(srv.db_path)


def test_user_id_may_be_a_decimal_string(server):
    # (A hold by a user never seen creates them with balance 0: the store's
    # unit test checks that, as every user here needs a seeded waiting-room
    # token once the gate is wired in.)
    srv = server()
    sid = first_session(srv)
    body = assert_ok_json(hold(srv, "42", 1, sid, seat_ids(srv, 1, sid, [5])), 201)
    assert body["userId"] == 42
    assert scalar(srv.db_path, "SELECT user_id FROM reservations WHERE id = ?",
                  body["reservationId"]) == 42


def test_taken_seat_is_409_naming_it_and_nothing_is_held(server):
    srv = server()
    sid = first_session(srv)
    a, b, c = seat_ids(srv, 1, sid, [10, 11, 12])
    assert_ok_json(hold(srv, 1, 1, sid, [b]), 201)
    before = snapshot(srv.db_path)
    err = assert_error(hold(srv, 2, 1, sid, [a, b, c]), 409, "SEAT_UNAVAILABLE",
                       [str(b), "number 11", f"session {sid}", "held"])
    assert err
    assert snapshot(srv.db_path) == before
    check_invariants(srv.db_path)


def test_foreign_or_unknown_seat_is_404_and_nothing_is_held(server):
    srv = server()
    s1, s2 = [s["sessionId"] for s in sessions_of(srv, 1)[:2]]
    mine = seat_ids(srv, 1, s1, [1, 2])
    foreign = seat_ids(srv, 1, s2, [3])[0]
    before = snapshot(srv.db_path)
    assert_error(hold(srv, 1, 1, s1, mine + [foreign]), 404, "NOT_FOUND",
                 [str(foreign), f"session {s1}"])
    assert_error(hold(srv, 1, 1, s1, [mine[0], 999999]), 404, "NOT_FOUND", ["999999"])
    assert snapshot(srv.db_path) == before


@pytest.mark.parametrize("path", [
    "/api/v1/concerts/1/sessions/999999/reservations",
    "/api/v1/concerts/999/sessions/1/reservations",
    "/api/v1/concerts/2/sessions/1/reservations",  # session 1 is concert 1's
])
def test_unknown_session_is_404(server, path):
    srv = server()
    before = snapshot(srv.db_path)
    assert_error(srv.post(path, {"userId": 1, "seatIds": [1]}, headers=auth(1)), 404, "NOT_FOUND",
                 ["session"])
    assert snapshot(srv.db_path) == before


# --- bad input: 400, nothing changes ---------------------------------------------------


BAD_HOLDS = [
    (None, "empty"),
    ("not json", "not valid JSON"),
    ("[1, 2]", "object"),
    ({"seatIds": [1]}, "userId"),
    ({"userId": 1}, "seatIds"),
    ({"userId": 1, "seatIds": []}, "1 to 4"),
    ({"userId": 1, "seatIds": [1, 2, 3, 4, 5]}, "1 to 4"),
    ({"userId": 1, "seatIds": [1, 2, 1]}, "more than once"),
    ({"userId": 1, "seatIds": [0]}, "seatIds[0]"),
    ({"userId": 1, "seatIds": [-4]}, "seatIds[0]"),
    ({"userId": 1, "seatIds": [1, "2"]}, "seatIds[1]"),
    ({"userId": 1, "seatIds": [1.5]}, "seatIds[0]"),
    ({"userId": 1, "seatIds": [True]}, "seatIds[0]"),
    ({"userId": 1, "seatIds": [None]}, "seatIds[0]"),
    ({"userId": 1, "seatIds": {"a": 1}}, "array"),
    ({"userId": 1, "seatIds": "1,2"}, "array"),
    ({"userId": 0, "seatIds": [1]}, "userId"),
    ({"userId": -1, "seatIds": [1]}, "userId"),
    ({"userId": "abc", "seatIds": [1]}, "userId"),
    ({"userId": 1.0, "seatIds": [1]}, "userId"),
    ({"userId": None, "seatIds": [1]}, "userId"),
    ({"userId": 1, "seatIds": [1], "extra": 1}, "extra"),
    ('{"userId": 1, "userId": 2, "seatIds": [1]}', "userId"),
    ({"userId": 1, "seatIds": [9223372036854775808]}, ("seatIds", "JSON")),
]


@pytest.mark.parametrize("body,mentions", BAD_HOLDS)
def test_bad_hold_body_is_400_and_changes_nothing(shared_db_server, body, mentions):
    srv = shared_db_server
    sid = first_session(srv)
    before = snapshot(srv.db_path)
    r = srv.post(f"/api/v1/concerts/1/sessions/{sid}/reservations", body,
                 headers={**auth(1), "Content-Type": "application/json"})
    assert_error(r, 400, "INVALID_REQUEST", [mentions])
    assert snapshot(srv.db_path) == before


@pytest.mark.parametrize("method,path", [
    ("POST", "/api/v1/concerts/abc/sessions/1/reservations"),
    ("POST", "/api/v1/concerts/1/sessions/0/reservations"),
    ("GET", "/api/v1/reservations/abc"),
    ("DELETE", "/api/v1/reservations/-1"),
    ("GET", "/api/v1/reservations/9223372036854775808"),
])
def test_bad_path_id_is_400(shared_db_server, method, path):
    r = shared_db_server.request(method, path, {"userId": 1, "seatIds": [1]} if method == "POST"
                                 else None, headers=auth(1))
    assert_error(r, 400, "INVALID_REQUEST", ["path parameter"])


def test_more_than_max_seats_per_hold_is_400(server):
    srv = server(args=["--max-seats-per-hold", "2"])
    sid = first_session(srv)
    ids = seat_ids(srv, 1, sid, [1, 2, 3])
    assert_error(hold(srv, 1, 1, sid, ids), 400, "INVALID_REQUEST", ["1 to 2 seats"])
    assert_ok_json(hold(srv, 1, 1, sid, ids[:2]), 201)


def test_wrong_methods_are_405(shared_db_server):
    r = shared_db_server.put("/api/v1/reservations/1", {"x": 1}, headers=auth(1))
    assert_error(r, 405, "METHOD_NOT_ALLOWED")
    assert "DELETE" in r.headers["Allow"] and "GET" in r.headers["Allow"]
    r = shared_db_server.get("/api/v1/concerts/1/sessions/1/reservations", headers=auth(1))
    assert_error(r, 405, "METHOD_NOT_ALLOWED")


@pytest.fixture(scope="module")
def shared_db_server(tmp_path_factory):
    """One server for read-only and refused requests (nothing may change)."""
    from conftest import ServerFactory
    f = ServerFactory(tmp_path_factory.mktemp("booking"))
    srv = f()
    yield srv
    f.teardown()


# --- the caller: the waiting-room gate ------------------------------------------------------


def test_caller_must_be_the_user_it_holds_for(server):
    srv = server()
    sid = first_session(srv)
    ids = seat_ids(srv, 1, sid, [1])
    before = snapshot(srv.db_path)
    assert_error(hold(srv, 5, 1, sid, ids, headers=auth(6)), 403, "FORBIDDEN", ["5"])
    assert snapshot(srv.db_path) == before


def test_holds_reads_cancels_and_payments_are_behind_the_gate(server):
    srv = server(args=["--queue-max-active", "50"])  # users 1..50 hold seeded tokens: full
    sid = first_session(srv)
    ids = seat_ids(srv, 1, sid, [1])
    made = assert_ok_json(hold(srv, 5, 1, sid, ids), 201)
    rid = made["reservationId"]
    waiting = assert_ok_json(srv.post("/api/v1/waiting-queues", {"userId": 77}, token=None), 201)
    assert waiting["status"] == "WAITING"
    before = snapshot(srv.db_path)
    more = seat_ids(srv, 1, sid, [2])
    for headers, status, code in (({}, 401, "TOKEN_MISSING"),
                                  ({"QUEUE-TOKEN": "nope"}, 401, "TOKEN_INVALID"),
                                  ({"QUEUE-TOKEN": waiting["token"]}, 403, "TOKEN_NOT_ACTIVE")):
        def req(method, path, body=None):
            return srv.request(method, path, body, headers=headers, token=None)
        assert_error(req("POST", f"/api/v1/concerts/1/sessions/{sid}/reservations",
                         {"userId": 77, "seatIds": more}), status, code)
        assert_error(req("GET", f"/api/v1/reservations/{rid}"), status, code)
        assert_error(req("DELETE", f"/api/v1/reservations/{rid}"), status, code)
        assert_error(req("POST", "/api/v1/payments", {"userId": 5, "reservationId": rid}),
                     status, code)
    assert snapshot(srv.db_path) == before


def test_paying_expires_the_waiting_room_token(server):
    srv = server(seed=["--users", "10", "--balance", "1000000"])
    sid = first_session(srv)
    rid = assert_ok_json(hold(srv, 3, 1, sid, seat_ids(srv, 1, sid, [4])), 201)["reservationId"]
    assert_ok_json(pay(srv, 3, rid), 201)
    tok = assert_ok_json(srv.get("/api/v1/waiting-queues", headers=auth(3)))
    assert tok["status"] == "EXPIRED", tok
    assert_error(hold(srv, 3, 1, sid, seat_ids(srv, 1, sid, [5])), 403, "TOKEN_NOT_ACTIVE")
    # Other users' tokens are untouched.
    assert assert_ok_json(srv.get("/api/v1/waiting-queues", headers=auth(4)))["status"] == \
        "ACTIVATED"



# --- read and cancel ------------------------------------------------------------------------


def test_owner_reads_the_reservation_others_get_403_unknown_404(server):
    srv = server()
    sid = first_session(srv)
    made = assert_ok_json(hold(srv, 8, 1, sid, seat_ids(srv, 1, sid, [20, 21])), 201)
    rid = made["reservationId"]
    got = assert_ok_json(srv.get(f"/api/v1/reservations/{rid}", headers=auth(8)))
    assert got == made
    assert_error(srv.get(f"/api/v1/reservations/{rid}", headers=auth(9)), 403, "FORBIDDEN",
                 [str(rid)])
    assert_error(srv.get(f"/api/v1/reservations/{rid + 1000}", headers=auth(8)), 404, "NOT_FOUND",
                 [str(rid + 1000)])
    assert_error(srv.delete(f"/api/v1/reservations/{rid}", headers=auth(9)), 403, "FORBIDDEN")
    assert_error(srv.delete(f"/api/v1/reservations/{rid + 1000}", headers=auth(8)), 404,
                 "NOT_FOUND")
    assert scalar(srv.db_path, "SELECT status FROM reservations WHERE id = ?", rid) == "HELD"


def test_delete_cancels_releases_seats_and_repeats_harmlessly(server):
    srv = server()
    sid = first_session(srv)
    ids = seat_ids(srv, 1, sid, [30, 31])
    rid = assert_ok_json(hold(srv, 8, 1, sid, ids), 201)["reservationId"]
    body = assert_ok_json(srv.delete(f"/api/v1/reservations/{rid}", headers=auth(8)))
    assert body["status"] == "CANCELLED" and body["reservationId"] == rid
    assert [s["seatId"] for s in body["seats"]] == ids
    assert {30, 31} <= {s["seatNumber"] for s in seats_of(srv, 1, sid)}
    again = assert_ok_json(srv.delete(f"/api/v1/reservations/{rid}", headers=auth(8)))
    assert again["status"] == "CANCELLED"
    assert scalar(srv.db_path, "SELECT available_seats FROM sessions WHERE id = ?", sid) == SEATS
    assert_error(pay(srv, 8, rid), 409, "RESERVATION_NOT_PAYABLE", ["CANCELLED"])
    assert_ok_json(hold(srv, 9, 1, sid, ids), 201)  # the seats are free for the next fan
    check_invariants(srv.db_path)


def test_delete_of_a_paid_reservation_is_409(server):
    srv = server(seed=["--balance", "1000000"])
    sid = first_session(srv)
    rid = assert_ok_json(hold(srv, 8, 1, sid, seat_ids(srv, 1, sid, [40])), 201)["reservationId"]
    assert_ok_json(pay(srv, 8, rid), 201)
    assert_error(srv.delete(f"/api/v1/reservations/{rid}", headers=reactivate(srv, 8)), 409,
                 "CONFLICT", ["CONFIRMED"])
    assert scalar(srv.db_path, "SELECT status FROM seats WHERE reservation_id = ?", rid) == 2
    check_invariants(srv.db_path)


def test_get_and_delete_take_no_body(shared_db_server):
    r = shared_db_server.request("DELETE", "/api/v1/reservations/1", {"a": 1}, headers=auth(1))
    assert_error(r, 400, "INVALID_REQUEST", ["no body"])


# --- expiry ----------------------------------------------------------------------------------


def test_expired_hold_gives_its_seats_back_within_a_second_of_its_ttl(server):
    srv = server(args=["--hold-ttl", "1s"])
    sid = first_session(srv)
    ids = seat_ids(srv, 1, sid, [7, 8])
    t0 = time.monotonic()
    rid = assert_ok_json(hold(srv, 4, 1, sid, ids), 201)["reservationId"]
    time.sleep(0.5)
    assert not {7, 8} & {s["seatNumber"] for s in seats_of(srv, 1, sid)}, "released too early"
    while {7, 8} - {s["seatNumber"] for s in seats_of(srv, 1, sid)}:
        assert time.monotonic() - t0 < 2.0, "seats not back within ttl + 1 s"
        time.sleep(0.02)
    assert time.monotonic() - t0 >= 1.0
    assert scalar(srv.db_path, "SELECT status FROM reservations WHERE id = ?", rid) == "EXPIRED"
    assert assert_ok_json(srv.get(f"/api/v1/reservations/{rid}", headers=auth(4)))["status"] \
        == "EXPIRED"
    counts = {s["sessionId"]: s["availableSeats"] for s in sessions_of(srv, 1)}
    assert counts[sid] == SEATS
    assert_error(pay(srv, 4, rid), 409, "RESERVATION_NOT_PAYABLE", ["EXPIRED"])
    assert_error(srv.delete(f"/api/v1/reservations/{rid}", headers=auth(4)), 409, "CONFLICT",
                 ["EXPIRED"])
    assert_ok_json(hold(srv, 5, 1, sid, ids), 201)
    check_invariants(srv.db_path)


# --- invariant 1 under concurrency -----------------------------------------------------------------


def test_500_clients_race_for_one_seat_exactly_one_holds_it(server):
    srv = server(seed=["--users", "500"])
    sid = first_session(srv)
    seat = seat_ids(srv, 1, sid, [25])[0]
    results = race(500, lambda i: hold(srv, i + 1, 1, sid, [seat]))
    statuses = sorted(r.status for r in results)
    assert statuses.count(201) == 1, statuses[-5:]
    assert statuses.count(409) == 499, set(statuses)
    for r in results:
        if r.status == 409:
            assert r.json["error"]["code"] == "SEAT_UNAVAILABLE"
    winner = next(r.json for r in results if r.status == 201)
    assert rows(srv.db_path, "SELECT status, reservation_id FROM seats WHERE id = ?", seat) == \
        [(1, winner["reservationId"])]
    assert scalar(srv.db_path, "SELECT count(*) FROM reservations") == 1
    assert scalar(srv.db_path, "SELECT available_seats FROM sessions WHERE id = ?", sid) == \
        SEATS - 1
    check_invariants(srv.db_path)


def test_overlapping_multi_seat_holds_never_share_a_seat(server):
    srv = server(seed=["--users", "300"])
    sid = first_session(srv, 3)
    pool = seat_ids(srv, 3, sid, range(1, 13))  # 12 seats, 300 clients asking for 2-4 each
    rng = random.Random(4)
    wanted = [rng.sample(pool, rng.randint(2, 4)) for _ in range(300)]
    results = race(300, lambda i: hold(srv, i + 1, 3, sid, wanted[i]))
    won = [r.json for r in results if r.status == 201]
    assert all(r.status in (201, 409) for r in results), {r.status for r in results}
    assert won, "nobody got a hold"
    taken = [s["seatId"] for w in won for s in w["seats"]]
    assert len(taken) == len(set(taken)), "a seat is in two holds"
    for w, r in ((r.json, r) for r in results if r.status == 201):
        i = results.index(r)
        assert sorted(s["seatId"] for s in w["seats"]) == sorted(wanted[i])
        db_seats = rows(srv.db_path, "SELECT id FROM seats WHERE reservation_id = ? AND status = 1"
                        " ORDER BY id", w["reservationId"])
        assert [x[0] for x in db_seats] == sorted(wanted[i])
    for r in results:
        if r.status == 409:  # refused only because a seat it wanted really was taken
            i = results.index(r)
            assert set(wanted[i]) & set(taken), f"refused with all seats free: {wanted[i]}"
    assert scalar(srv.db_path, "SELECT count(*) FROM reservations WHERE status = 'HELD'") == \
        len(won)
    assert scalar(srv.db_path, "SELECT available_seats FROM sessions WHERE id = ?", sid) == \
        SEATS - len(taken)
    check_invariants(srv.db_path)
