"""Payments (DESIGN.md 3, 4.1; invariants 1-4, 6): paying a hold from the
balance in one transaction (debit, ledger, payment, CONFIRMED, seats SOLD,
outbox event), every refusal (402, 403, 404, 409, 503, 400) with nothing
changed, Idempotency-Key replay, 100 concurrent payments of one
reservation, and a kill -9 under charge and payment load after which every
acknowledged charge and payment is in the database."""

import json
import random
import signal
import threading
import time

import pytest

from booking_util import (Client, auth, balance, charge, check_invariants, hold, pay, race,
                          reactivate, rows, scalar, seats_of, sessions_of)
from conftest import assert_error, assert_ok_json

PRICE = 1000


def new_hold(srv, uid, numbers, cid=1, k=0):
    sid = sessions_of(srv, cid)[k]["sessionId"]
    by_number = {s["seatNumber"]: s["seatId"] for s in seats_of(srv, cid, sid)}
    body = assert_ok_json(hold(srv, uid, cid, sid, [by_number[n] for n in numbers]), 201)
    return body["reservationId"], sid, body


def money_rows(path):
    """Everything a payment may change."""
    return (rows(path, "SELECT id, balance FROM users ORDER BY id"),
            rows(path, "SELECT * FROM balance_ledger ORDER BY id"),
            rows(path, "SELECT * FROM payments ORDER BY id"),
            rows(path, "SELECT id, status FROM reservations ORDER BY id"),
            rows(path, "SELECT id, status, reservation_id FROM seats WHERE status <> 0"),
            rows(path, "SELECT * FROM outbox ORDER BY id"))


def test_payment_debits_confirms_sells_and_records_an_event(server):
    srv = server(seed=["--price", str(PRICE), "--users", "10", "--balance", "5000"])
    rid, sid, held = new_hold(srv, 3, [4, 5])
    before = time.time()
    r = pay(srv, 3, rid)
    body = assert_ok_json(r, 201)
    assert set(body) == {"paymentId", "reservationId", "userId", "amount", "method", "status",
                         "paidAt"}, body
    assert body["reservationId"] == rid and body["userId"] == 3 and body["amount"] == 2 * PRICE
    assert body["method"] == "balance" and body["status"] == "COMPLETED"
    assert isinstance(body["paymentId"], int) and body["paymentId"] > 0
    assert body["paidAt"] >= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before - 1))
    assert balance(srv, 3) == 3000
    # Paying expired the payer's token; reading the reservation takes a new one.
    assert_error(srv.get(f"/api/v1/reservations/{rid}", headers=auth(3)), 403, "TOKEN_NOT_ACTIVE")
    got = assert_ok_json(srv.get(f"/api/v1/reservations/{rid}", headers=reactivate(srv, 3)))
    assert got["status"] == "CONFIRMED" and got["seats"] == held["seats"]
    assert not {4, 5} & {s["seatNumber"] for s in seats_of(srv, 1, sid)}
    assert rows(srv.db_path, "SELECT status FROM seats WHERE reservation_id = ?", rid) == \
        [(2,), (2,)]
    assert rows(srv.db_path, "SELECT kind, amount, balance_after, ref FROM balance_ledger"
                " WHERE user_id = 3 ORDER BY id") == \
        [("CHARGE", 5000, 5000, None), ("PAYMENT", -2000, 3000, body["paymentId"])]
    ev = [(topic, agg, json.loads(payload)["reservationId"], json.loads(payload)["amount"], pub)
          for topic, agg, payload, pub in rows(
              srv.db_path, "SELECT topic, aggregate_id, payload, published_at FROM outbox")]
    assert ev == [("payment.completed", body["paymentId"], rid, 2000, None)]
    check_invariants(srv.db_path)


def test_method_balance_may_be_given_and_user_id_as_string(server):
    srv = server(seed=["--price", str(PRICE), "--users", "10", "--balance", "5000"])
    rid, _, _ = new_hold(srv, 4, [1])
    body = assert_ok_json(pay(srv, "4", rid, method="balance"), 201)
    assert body["userId"] == 4 and body["method"] == "balance"


def test_insufficient_balance_is_402_and_changes_nothing(server):
    srv = server(seed=["--price", str(PRICE), "--users", "10", "--balance", "1500"])
    rid, _, _ = new_hold(srv, 2, [1, 2])
    before = money_rows(srv.db_path)
    assert_error(pay(srv, 2, rid), 402, "INSUFFICIENT_BALANCE", ["1500", "2000"])
    assert money_rows(srv.db_path) == before
    assert_ok_json(charge(srv, 2, 500))
    assert_ok_json(pay(srv, 2, rid), 201)
    assert balance(srv, 2) == 0
    check_invariants(srv.db_path)


def test_refusals_change_nothing(server):
    srv = server(seed=["--price", str(PRICE), "--users", "10", "--balance", "9000"])
    rid, _, _ = new_hold(srv, 5, [9])
    before = money_rows(srv.db_path)
    assert_error(pay(srv, 6, rid), 403, "FORBIDDEN", [str(rid)])        # not their reservation
    assert_error(pay(srv, 5, rid, headers=auth(6)), 403, "FORBIDDEN")   # caller is someone else
    assert_error(pay(srv, 5, rid + 100), 404, "NOT_FOUND", [str(rid + 100)])
    assert_error(pay(srv, 5, rid, method="card"), 503, "GATEWAY_UNAVAILABLE", ["not configured"])
    assert money_rows(srv.db_path) == before
    assert_ok_json(pay(srv, 5, rid), 201)
    again = reactivate(srv, 5)
    after = money_rows(srv.db_path)
    assert_error(pay(srv, 5, rid, headers=again), 409, "RESERVATION_NOT_PAYABLE", ["CONFIRMED"])
    assert money_rows(srv.db_path) == after
    check_invariants(srv.db_path)


@pytest.mark.parametrize("body,mentions", [
    (None, "empty"),
    ("nope", "not valid JSON"),
    ({"reservationId": 1}, "userId"),
    ({"userId": 1}, "reservationId"),
    ({"userId": 1, "reservationId": "1"}, "reservationId"),
    ({"userId": 1, "reservationId": 0}, "reservationId"),
    ({"userId": 1, "reservationId": 1.5}, "reservationId"),
    ({"userId": 0, "reservationId": 1}, "userId"),
    ({"userId": "x", "reservationId": 1}, "userId"),
    ({"userId": 1, "reservationId": 1, "method": "cash"}, "method"),
    ({"userId": 1, "reservationId": 1, "method": ""}, "method"),
    ({"userId": 1, "reservationId": 1, "method": 1}, "method"),
    ({"userId": 1, "reservationId": 1, "amount": 1000}, "amount"),
])
def test_bad_payment_body_is_400_and_changes_nothing(server, body, mentions):
    srv = server(seed=["--price", str(PRICE), "--users", "2", "--balance", "9000"])
    new_hold(srv, 1, [1])
    before = money_rows(srv.db_path)
    r = srv.post("/api/v1/payments", body,
                 headers={**auth(1), "Content-Type": "application/json",
                          "Idempotency-Key": "bad-body"})
    assert_error(r, 400, "INVALID_REQUEST", [mentions])
    assert money_rows(srv.db_path) == before
    assert scalar(srv.db_path, "SELECT count(*) FROM idempotency_keys") == 0


def test_payments_route_allows_only_post(server):
    srv = server()
    assert_error(srv.get("/api/v1/payments", headers=auth(1)), 405, "METHOD_NOT_ALLOWED")


# --- Idempotency-Key ---------------------------------------------------------------------------


def test_retry_with_same_key_replays_the_201_and_pays_once(server):
    srv = server(seed=["--price", str(PRICE), "--users", "10", "--balance", "5000"])
    rid, _, _ = new_hold(srv, 7, [1, 2, 3])
    first = pay(srv, 7, rid, key="pay-1")
    assert first.status == 201
    for _ in range(3):
        again = pay(srv, 7, rid, key="pay-1")
        assert again.status == 201 and again.raw == first.raw
    assert balance(srv, 7) == 2000
    assert scalar(srv.db_path, "SELECT count(*) FROM payments") == 1
    assert scalar(srv.db_path, "SELECT idempotency_key FROM payments") == "pay-1"
    # A new key is a new attempt: the gate stops it (paying expired the
    # token); with a new token it finds the reservation paid.
    assert_error(pay(srv, 7, rid, key="pay-2"), 403, "TOKEN_NOT_ACTIVE")
    # The expired token replays only the very request the key was used for.
    assert_error(pay(srv, 7, rid + 1, key="pay-1"), 403, "TOKEN_NOT_ACTIVE")
    again = reactivate(srv, 7)
    assert_error(pay(srv, 7, rid, key="pay-2", headers=again), 409, "RESERVATION_NOT_PAYABLE")
    assert_error(pay(srv, 7, rid + 1, key="pay-1", headers=again), 409, "IDEMPOTENCY_CONFLICT")
    assert_error(charge(srv, 7, 100, key="pay-1"), 409, "IDEMPOTENCY_CONFLICT")
    check_invariants(srv.db_path)


def test_a_refused_payment_is_replayed_too_a_new_key_tries_again(server):
    srv = server(seed=["--price", str(PRICE), "--users", "10", "--balance", "500"])
    rid, _, _ = new_hold(srv, 8, [1])
    first = pay(srv, 8, rid, key="try-1")
    assert_error(first, 402, "INSUFFICIENT_BALANCE")
    assert_ok_json(charge(srv, 8, 500))
    again = pay(srv, 8, rid, key="try-1")
    assert again.status == 402 and again.raw == first.raw  # the first answer, not a new try
    assert_ok_json(pay(srv, 8, rid, key="try-2"), 201)
    assert balance(srv, 8) == 0
    check_invariants(srv.db_path)


# --- invariant 4 under concurrency ------------------------------------------------------------------


def test_100_concurrent_payments_of_one_reservation_debit_once(server):
    srv = server(seed=["--price", str(PRICE), "--users", "10", "--balance", "100000"])
    rid, _, _ = new_hold(srv, 9, [1, 2])
    results = race(100, lambda i: pay(srv, 9, rid))
    statuses = [r.status for r in results]
    # One pays. The others find it paid (409), or, once the payment expired
    # the payer's token, are stopped at the gate (403).
    assert statuses.count(201) == 1 and statuses.count(409) + statuses.count(403) == 99, \
        sorted(set(statuses))
    assert all(r.json["error"]["code"] == "RESERVATION_NOT_PAYABLE"
               for r in results if r.status == 409)
    assert all(r.json["error"]["code"] == "TOKEN_NOT_ACTIVE" for r in results if r.status == 403)
    assert balance(srv, 9) == 100000 - 2 * PRICE
    assert scalar(srv.db_path, "SELECT count(*) FROM payments") == 1
    assert scalar(srv.db_path, "SELECT count(*) FROM balance_ledger WHERE kind = 'PAYMENT'") == 1
    check_invariants(srv.db_path)


def test_100_concurrent_payments_with_one_key_all_get_the_same_201(server):
    srv = server(seed=["--price", str(PRICE), "--users", "10", "--balance", "100000"])
    rid, _, _ = new_hold(srv, 9, [3])
    results = race(100, lambda i: pay(srv, 9, rid, key="same-key"))
    assert {r.status for r in results} == {201}
    assert len({r.raw for r in results}) == 1
    assert balance(srv, 9) == 100000 - PRICE
    assert scalar(srv.db_path, "SELECT count(*) FROM payments") == 1
    assert scalar(srv.db_path, "SELECT count(*) FROM balance_ledger WHERE kind = 'PAYMENT'") == 1
    check_invariants(srv.db_path)


# --- invariant 3: kill -9 under load -------------------------------------------------------------------


class Load:
    """Charge and hold-then-pay clients that record every 2xx they receive."""

    def __init__(self, srv, users, seats):
        self.srv, self.users = srv, users
        self.seats = seats            # (session id, seat id) left for the payers to hold
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.next_amount = 100000     # every charge a distinct amount above the seed's 1500
        self.charges = []             # (uid, amount, key, response raw)
        self.holds = []               # (rid, uid, seat id)
        self.payments = []            # (rid, uid, key, response json, raw)
        self.threads = []
        self.tokens = {}              # uid -> headers with its current token

    def amount(self):
        with self.lock:
            self.next_amount += 1
            return self.next_amount

    def charger(self, seed):
        rng, c = random.Random(seed), Client(self.srv, timeout=5)
        while not self.stop.is_set():
            uid, amount = rng.choice(self.users), self.amount()
            key = f"c-{amount}" if amount % 2 else None
            h = {"Idempotency-Key": key} if key else {}
            r = c.request("POST", f"/api/v1/users/{uid}/balance/charge", {"amount": amount}, h)
            if r is not None and r.status == 200:
                with self.lock:
                    self.charges.append((uid, amount, key, r.raw))
        c.close()

    def headers(self, uid, **extra):
        """uid's current token: paying expires it, and the next hold needs a new one."""
        with self.lock:
            h = self.tokens.get(uid)
        return {**(h or auth(uid)), **extra}

    def pay_until_paid(self, c, rid, uid):
        for attempt in range(1000):  # 402 until a charge lands: retry with a new key
            if self.stop.is_set():
                return
            key = f"p-{rid}-{attempt}"
            r = c.request("POST", "/api/v1/payments", {"userId": uid, "reservationId": rid},
                          self.headers(uid, **{"Idempotency-Key": key}))
            if r is not None and r.status == 201:
                with self.lock:
                    self.payments.append((rid, uid, key, r.json, r.raw))
                try:
                    fresh = reactivate(self.srv, uid)
                except (AssertionError, OSError):
                    return  # the server is gone (killed): the load stops anyway
                with self.lock:
                    self.tokens[uid] = fresh
                return
            time.sleep(0.002)

    def payer(self, seed):
        rng, c = random.Random(seed), Client(self.srv, timeout=5)
        while not self.stop.is_set():
            with self.lock:
                if not self.seats:
                    break
                sid, seat = self.seats.pop()
            uid = rng.choice(self.users)
            r = c.request("POST", f"/api/v1/concerts/1/sessions/{sid}/reservations",
                          {"userId": uid, "seatIds": [seat]}, self.headers(uid))
            if r is not None and r.status == 201:
                rid = r.json["reservationId"]
                with self.lock:
                    self.holds.append((rid, uid, seat))
                self.pay_until_paid(c, rid, uid)
        c.close()

    def start(self, chargers=5, payers=4):
        for i in range(chargers):
            self.threads.append(threading.Thread(target=self.charger, args=(i,), daemon=True))
        for i in range(payers):
            self.threads.append(threading.Thread(target=self.payer, args=(100 + i,), daemon=True))
        for t in self.threads:
            t.start()

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(15)
        assert not any(t.is_alive() for t in self.threads)


@pytest.mark.fault
def test_kill_9_under_load_loses_no_acknowledged_charge_or_payment(server):
    srv = server(seed=["--price", str(PRICE), "--users", "40", "--balance", "1500",
                       "--seats-per-session", "1000"])
    users = list(range(1, 41))
    seats = [(s["sessionId"], seat["seatId"]) for s in sessions_of(srv, 1)
             for seat in seats_of(srv, 1, s["sessionId"])]
    random.shuffle(seats)
    load = Load(srv, users, seats)
    load.start()
    time.sleep(random.uniform(1.0, 2.0))
    srv.allowed_signals.add(signal.SIGKILL)
    srv.expect_clean_exit = False
    srv.signal(signal.SIGKILL)
    srv.proc.wait(10)
    load.join()
    assert len(load.charges) >= 20 and len(load.payments) >= 5 and load.seats, \
        f"too little load before the kill, or it ran out of seats: {len(load.charges)} " \
        f"charges, {len(load.payments)} payments, {len(load.seats)} seats left"

    path = srv.db_path
    print(f"acknowledged before kill -9: {len(load.charges)} charges, {len(load.holds)} holds,"
          f" {len(load.payments)} payments")
    ledger = {}
    for uid, amount in rows(path, "SELECT user_id, amount FROM balance_ledger"
                            " WHERE kind = 'CHARGE' AND amount > 1500"):
        ledger.setdefault((uid, amount), 0)
        ledger[(uid, amount)] += 1
    lost = [(u, a) for u, a, _, _ in load.charges if ledger.get((u, a)) != 1]
    assert not lost, f"{len(lost)} acknowledged charges missing after kill -9: {lost[:10]}"
    for rid, uid, key, body, _ in load.payments:
        assert rows(path, "SELECT reservation_id, user_id, amount, status, idempotency_key"
                    " FROM payments WHERE id = ?", body["paymentId"]) == \
            [(rid, uid, PRICE, "COMPLETED", key)], f"acknowledged payment {body} lost"
        assert scalar(path, "SELECT status FROM reservations WHERE id = ?", rid) == "CONFIRMED"
    for rid, uid, seat in load.holds:
        assert rows(path, "SELECT user_id, seat_id FROM reservations r JOIN reservation_seats rs"
                    " ON rs.reservation_id = r.id WHERE r.id = ?", rid) == [(uid, seat)], \
            f"acknowledged hold {rid} lost"
        assert scalar(path, "SELECT reservation_id FROM seats WHERE id = ?", seat) == rid
    check_invariants(path)

    again = server(db_path=path, do_seed=False)  # restart on the same file
    for uid in users:
        assert balance(again, uid) == scalar(path, "SELECT coalesce(sum(amount), 0) FROM"
                                                   " balance_ledger WHERE user_id = ?", uid)
    for uid, amount, key, raw in [c for c in load.charges if c[2]][:20]:
        r = charge(again, uid, amount, key=key)  # the stored answer survived too
        assert r.status == 200 and r.raw == raw
    for rid, uid, key, _, raw in load.payments[:20]:
        r = pay(again, uid, rid, key=key)
        assert r.status == 201 and r.raw == raw
    check_invariants(path)
