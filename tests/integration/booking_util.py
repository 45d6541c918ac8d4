"""Helpers shared by the booking tests (test_booking.py, test_balance.py,
test_payments.py): who the caller is, the routes, concurrent clients, and
the invariants of DESIGN.md section 3 checked in the database itself.

auth(uid) is the one place that says who a request comes from: the
ACTIVATED waiting-room token the test harness seeds for that user
(conftest.active_token)."""

import http.client
import json
import sqlite3
import threading
import time

from conftest import HTTP_TIMEOUT, Response, active_token, assert_ok_json

SEATS = 50  # default seed: seats per session


def auth(uid, **extra):
    """Headers of a request made by user uid (see the module docstring)."""
    return {"QUEUE-TOKEN": active_token(uid), **extra}


def reactivate(srv, uid, timeout=5.0):
    """Headers with a new ACTIVATED token for uid, whose token paying expired:
    enter the waiting room again and wait to be admitted."""
    r = srv.post("/api/v1/waiting-queues", {"userId": uid}, token=None)
    tok = assert_ok_json(r, r.status)["token"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if assert_ok_json(srv.get("/api/v1/waiting-queues", token=tok))["status"] == "ACTIVATED":
            return {"QUEUE-TOKEN": tok}
        time.sleep(0.02)
    raise AssertionError(f"user {uid} was not admitted again within {timeout}s")


def sessions_of(srv, cid):
    return assert_ok_json(srv.get(f"/api/v1/concerts/{cid}/sessions", headers=auth(1)))["sessions"]


def seats_of(srv, cid, sid):
    """Available seats of a session (all pages of up to 1000)."""
    body = assert_ok_json(srv.get(f"/api/v1/concerts/{cid}/sessions/{sid}/seats?limit=1000",
                                  headers=auth(1)))
    return body["availableSeats"]


def hold(srv, uid, cid, sid, seat_ids, headers=None):
    return srv.post(f"/api/v1/concerts/{cid}/sessions/{sid}/reservations",
                    {"userId": uid, "seatIds": seat_ids}, headers=headers or auth(uid))


def pay(srv, uid, rid, key=None, method=None, headers=None):
    body = {"userId": uid, "reservationId": rid}
    if method is not None:
        body["method"] = method
    h = dict(headers or auth(uid))
    if key is not None:
        h["Idempotency-Key"] = key
    return srv.post("/api/v1/payments", body, headers=h)


def charge(srv, uid, amount, key=None):
    h = {"Idempotency-Key": key} if key is not None else {}
    return srv.post(f"/api/v1/users/{uid}/balance/charge", {"amount": amount}, headers=h)


def balance(srv, uid):
    return assert_ok_json(srv.get(f"/api/v1/users/{uid}/balance"))["balance"]


class Client:
    """One keep-alive connection, reopened after any error. request() returns
    a conftest.Response, or None when the exchange failed (the server may or
    may not have acted on it)."""

    def __init__(self, srv, timeout=HTTP_TIMEOUT):
        self.srv, self.timeout, self.conn = srv, timeout, None

    def request(self, method, path, body=None, headers=None):
        h = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.srv.host, self.srv.port,
                                                       timeout=self.timeout)
            self.conn.request(method, path, body=data, headers=h)
            r = self.conn.getresponse()
            return Response(r.status, r.headers, r.read())
        except (OSError, http.client.HTTPException):
            self.close()
            return None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def race(n, fn, timeout=60.0):
    """Runs fn(i) for i in 0..n-1 on n threads released at the same instant;
    returns their results in order (an exception is returned, not raised)."""
    results = [None] * n
    barrier = threading.Barrier(n)

    def run(i):
        try:
            barrier.wait(timeout)
            results[i] = fn(i)
        except Exception as e:  # noqa: BLE001 -- reported by the caller
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "race: threads still running at the timeout"
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, f"race: {len(errors)} clients failed, first: {errors[0]!r}"
    return results


def db(path):
    con = sqlite3.connect(str(path), timeout=10)
    con.row_factory = sqlite3.Row
    return con


def rows(path, sql, *args):
    """Rows of sql on a database: a SQLite file path, or a pgcluster.PgDatabase."""
    if hasattr(path, "rows"):
        return path.rows(sql, *args)
    con = db(path)
    try:
        return [tuple(r) for r in con.execute(sql, args)]
    finally:
        con.close()


def execute(path, sql, *args):
    """Runs one writing statement and commits it; returns the rows it returns
    (RETURNING). path: a SQLite file path, or a pgcluster.PgDatabase."""
    if hasattr(path, "rows"):
        return path.rows(sql, *args)
    con = db(path)
    try:
        with con:
            return [tuple(r) for r in con.execute(sql, args)]
    finally:
        con.close()


def scalar(path, sql, *args):
    return rows(path, sql, *args)[0][0]


INVARIANTS = {
    "available_seats is the number of free seats":
        "SELECT ss.id FROM sessions ss WHERE available_seats <>"
        " (SELECT count(*) FROM seats WHERE session_id = ss.id AND status = 0)",
    "balance = sum of the ledger, never negative (invariant 2)":
        "SELECT u.id FROM users u WHERE balance < 0 OR balance <>"
        " (SELECT coalesce(sum(amount), 0) FROM balance_ledger WHERE user_id = u.id)",
    "a held seat belongs to a HELD (or PAYMENT_PENDING) reservation, a sold one to a CONFIRMED one":
        "SELECT st.id FROM seats st LEFT JOIN reservations r ON r.id = st.reservation_id"
        " WHERE (st.status = 1 AND (r.status IS NULL OR r.status NOT IN ('HELD', 'PAYMENT_PENDING')))"
        " OR (st.status = 2 AND (r.status IS NULL OR r.status <> 'CONFIRMED'))",
    "every seat of a live reservation is taken by it (no seat in two live holds)":
        "SELECT rs.reservation_id FROM reservation_seats rs"
        " JOIN reservations r ON r.id = rs.reservation_id JOIN seats st ON st.id = rs.seat_id"
        " WHERE r.status IN ('HELD', 'PAYMENT_PENDING', 'CONFIRMED')"
        " AND (st.reservation_id IS DISTINCT FROM r.id"
        " OR st.status <> CASE r.status WHEN 'CONFIRMED' THEN 2 ELSE 1 END)",
    "a PAYMENT_PENDING reservation has exactly one PENDING payment, and vice versa":
        "SELECT r.id FROM reservations r WHERE (r.status = 'PAYMENT_PENDING') <>"
        " ((SELECT count(*) FROM payments p WHERE p.reservation_id = r.id"
        " AND p.status = 'PENDING') = 1)",
    "a reservation's price is the sum of its seats":
        "SELECT r.id FROM reservations r WHERE total_price <> (SELECT coalesce(sum(st.price), 0)"
        " FROM reservation_seats rs JOIN seats st ON st.id = rs.seat_id"
        " WHERE rs.reservation_id = r.id)",
    "a CONFIRMED reservation has exactly one COMPLETED payment, and vice versa (invariant 4)":
        "SELECT r.id FROM reservations r WHERE (r.status = 'CONFIRMED') <>"
        " ((SELECT count(*) FROM payments p WHERE p.reservation_id = r.id"
        " AND p.status = 'COMPLETED') = 1)"
        " OR (SELECT count(*) FROM payments p WHERE p.reservation_id = r.id"
        " AND p.status = 'COMPLETED') > 1",
    "a balance payment has one ledger row debiting its amount from its payer":
        "SELECT p.id FROM payments p WHERE p.status = 'COMPLETED' AND p.method = 'balance' AND"
        " (SELECT count(*) FROM balance_ledger l WHERE l.ref = p.id AND l.kind = 'PAYMENT'"
        " AND l.amount = -p.amount AND l.user_id = p.user_id) <> 1",
    "a completed payment has one payment.completed outbox event":
        "SELECT p.id FROM payments p WHERE p.status = 'COMPLETED' AND (SELECT count(*) FROM outbox"
        " WHERE topic = 'payment.completed' AND aggregate_id = p.id) <> 1",
}


def check_invariants(path):
    """Asserts every invariant above on the database file at path."""
    broken = {}
    for what, sql in INVARIANTS.items():
        bad = rows(path, sql)
        if bad:
            broken[what] = bad[:10]
    assert not broken, f"invariants broken in {path}: {broken}"
