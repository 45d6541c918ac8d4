"""Card payments through the payment gateway (DESIGN.md 1, 3, 4.1, 7):
a real mockpg process on a free port stands in for the gateway, and faults
are injected into it at run time (docs/gateway.md).

Approved and declined payments, the circuit breaker opening on failures
(503 + Retry-After without reaching the gateway) and closing again through
half-open, a gateway slower than --pg-timeout (202 PENDING, then reconciled
to CONFIRMED, the hold not expiring meanwhile), and kill -9 of concertd
while the gateway is charging: after the restart exactly one charge and a
CONFIRMED reservation; and rate-limited holds refused at once while the
only write worker waits on the gateway. Every test ends by comparing
mockpg's charges with the database: no charge lost, none made twice, no
seat sold unpaid."""

import json
import re
import signal
import subprocess
import threading
import time

import pytest

from booking_util import auth, check_invariants, hold, pay, race, reactivate, rows, scalar, \
    seats_of, sessions_of
from conftest import BIN, assert_error, assert_ok_json, free_port, http_request

PRICE = 1000
MOCKPG = BIN.parent / "mockpg"


class MockPG:
    """A mockpg process on a free port (see tools/mockpg/mockpg.c)."""

    def __init__(self, workdir):
        if not MOCKPG.is_file():
            pytest.fail(f"mockpg not found next to concertd at {MOCKPG}", pytrace=False)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(workdir / f"mockpg.{self.port}.stderr", "wb")
        self.proc = subprocess.Popen([str(MOCKPG), "--listen", f"127.0.0.1:{self.port}"],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.get("/admin/charges").status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail("mockpg did not start", pytrace=False)

    def get(self, path):
        return http_request("127.0.0.1", self.port, "GET", path, timeout=5)

    def faults(self, **f):
        r = http_request("127.0.0.1", self.port, "PUT", "/admin/faults", f, timeout=5)
        assert r.status == 200, r

    def charges(self):
        return self.get("/admin/charges").json["charges"]

    def stats(self):
        return self.get("/admin/stats").json

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def mockpg(tmp_path):
    m = MockPG(tmp_path)
    yield m
    m.stop()


def card_server(server, mockpg, *args, seed=(), hold_ttl="5m"):
    return server(seed=["--price", str(PRICE), "--users", "20", *seed],
                  args=["--pg-url", mockpg.url, "--hold-ttl", hold_ttl, *args])


def new_hold(srv, uid, numbers, k=0):
    sid = sessions_of(srv, 1)[k]["sessionId"]
    by_number = {s["seatNumber"]: s["seatId"] for s in seats_of(srv, 1, sid)}
    body = assert_ok_json(hold(srv, uid, 1, sid, [by_number[n] for n in numbers]), 201)
    return body["reservationId"], sid


def res_status(srv, rid):
    return scalar(srv.db_path, "SELECT status FROM reservations WHERE id = ?", rid)


def wait_for(what, fn, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def assert_money_matches(srv, mockpg):
    """Every approved charge is the one COMPLETED card payment of its
    reservation (by key and charge id), and every COMPLETED card payment
    was approved by the gateway; no key was charged twice."""
    charges = mockpg.charges()
    keys = [c["idempotencyKey"] for c in charges]
    assert len(keys) == len(set(keys)), f"a key charged twice: {charges}"
    approved = {c["idempotencyKey"]: c for c in charges if c["status"] == "APPROVED"}
    paid = {k: (cid, amount, rid) for k, cid, amount, rid in rows(
        srv.db_path, "SELECT idempotency_key, gateway_charge_id, amount, reservation_id"
        " FROM payments WHERE method = 'card' AND status = 'COMPLETED'")}
    assert set(paid) == set(approved), f"charges {approved} vs completed payments {paid}"
    for k, (cid, amount, rid) in paid.items():
        assert approved[k]["chargeId"] == cid and approved[k]["amount"] == amount, (k, paid[k])
        assert k.startswith(f"res-{rid}-"), k
    assert scalar(srv.db_path, "SELECT count(*) FROM payments WHERE method = 'card'"
                  " AND status = 'PENDING'") == 0
    check_invariants(srv.db_path)


def test_approved_card_payment_confirms_without_touching_the_balance(server, mockpg):
    srv = card_server(server, mockpg)
    rid, sid = new_hold(srv, 3, [7, 8])
    body = assert_ok_json(pay(srv, 3, rid, method="card"), 201)
    assert body["method"] == "card" and body["status"] == "COMPLETED"
    assert body["amount"] == 2 * PRICE and body["reservationId"] == rid and "paidAt" in body
    charges = mockpg.charges()
    assert [(c["idempotencyKey"], c["amount"], c["userId"], c["status"]) for c in charges] == \
        [(f"res-{rid}-1", 2 * PRICE, 3, "APPROVED")]
    assert res_status(srv, rid) == "CONFIRMED"
    assert rows(srv.db_path, "SELECT status FROM seats WHERE reservation_id = ?", rid) == \
        [(2,), (2,)]
    assert not {7, 8} & {s["seatNumber"] for s in seats_of(srv, 1, sid)}
    assert scalar(srv.db_path, "SELECT count(*) FROM balance_ledger WHERE user_id = 3") == 0
    ev = [(topic, json.loads(payload)["method"], json.loads(payload)["reservationId"])
          for topic, payload in rows(srv.db_path, "SELECT topic, payload FROM outbox")]
    assert ev == [("payment.completed", "card", rid)]
    # paying expired the token, as for balance payments; paying again is refused
    assert_error(pay(srv, 3, rid, method="card", headers=reactivate(srv, 3)), 409,
                 "RESERVATION_NOT_PAYABLE", "CONFIRMED")
    assert len(mockpg.charges()) == 1
    assert_money_matches(srv, mockpg)


def test_idempotency_key_replays_a_card_payment(server, mockpg):
    srv = card_server(server, mockpg)
    rid, _ = new_hold(srv, 4, [1])
    first = pay(srv, 4, rid, method="card", key="k-card-1")
    assert_ok_json(first, 201)
    again = pay(srv, 4, rid, method="card", key="k-card-1")  # token expired: replay anyway
    assert again.status == 201 and again.raw == first.raw
    assert len(mockpg.charges()) == 1
    assert_money_matches(srv, mockpg)


def test_declined_is_402_and_the_hold_is_kept_and_payable_again(server, mockpg):
    srv = card_server(server, mockpg)
    rid, sid = new_hold(srv, 5, [10])
    mockpg.faults(declineRate=1)
    assert_error(pay(srv, 5, rid, method="card"), 402, "PAYMENT_DECLINED", "declined")
    got = assert_ok_json(srv.get(f"/api/v1/reservations/{rid}", headers=auth(5)))
    assert got["status"] == "HELD"
    assert 10 not in {s["seatNumber"] for s in seats_of(srv, 1, sid)}
    assert rows(srv.db_path, "SELECT status, idempotency_key FROM payments") == \
        [("FAILED", f"res-{rid}-1")]
    mockpg.faults(declineRate=0)
    assert_ok_json(pay(srv, 5, rid, method="card"), 201)
    assert [(c["idempotencyKey"], c["status"]) for c in mockpg.charges()] == \
        [(f"res-{rid}-1", "DECLINED"), (f"res-{rid}-2", "APPROVED")]
    assert res_status(srv, rid) == "CONFIRMED"
    assert_money_matches(srv, mockpg)


@pytest.mark.fault
def breaker_metric(srv):
    text = srv.get("/metrics", token=None).raw.decode()
    m = re.search(r"^concertd_payment_gateway_breaker_state (\S+)$", text, re.M)
    assert m, "no breaker state in /metrics"
    return float(m.group(1))


def test_failures_open_the_breaker_then_it_fails_fast_and_recovers(server, mockpg):
    srv = card_server(server, mockpg, "--pg-timeout", "300ms", "--pg-breaker-window", "4",
                      "--pg-breaker-min-calls", "4", "--pg-breaker-failure-rate", "50",
                      "--pg-breaker-open", "1s")
    holds = [new_hold(srv, uid, [uid])[0] for uid in range(1, 11)]
    mockpg.faults(down=True)
    for uid in range(1, 5):  # 4 failures: the gateway's answer is unknown, so PENDING
        body = assert_ok_json(pay(srv, uid, holds[uid - 1], method="card"), 202)
        assert body["status"] == "PENDING" and body["method"] == "card"
        assert res_status(srv, holds[uid - 1]) == "PAYMENT_PENDING"
    before = mockpg.stats()["chargeRequests"]
    assert before == 4
    t0 = time.monotonic()
    r = pay(srv, 5, holds[4], method="card")
    elapsed = time.monotonic() - t0
    assert_error(r, 503, "GATEWAY_UNAVAILABLE", "circuit breaker")
    assert r.headers["Retry-After"] == "1"  # the 1 s open interval, rounded up
    assert elapsed < 0.25, f"an open breaker must fail fast, took {elapsed:.3f}s"
    assert mockpg.stats()["chargeRequests"] == before  # never reached the gateway
    assert res_status(srv, holds[4]) == "HELD"  # nothing written
    assert breaker_metric(srv) == 1  # open, as /metrics tells Prometheus
    # The gateway comes back; after the open interval trial calls go through.
    mockpg.faults(down=False)
    time.sleep(1.1)
    for uid in range(5, 8):  # the 3 half-open trials succeed: closed again
        assert_ok_json(pay(srv, uid, holds[uid - 1], method="card"), 201)
    for uid in range(8, 11):
        assert_ok_json(pay(srv, uid, holds[uid - 1], method="card"), 201)
    assert breaker_metric(srv) == 0
    log = srv.stderr_text()
    for change in ("from=closed to=open", "from=open to=half_open", "from=half_open to=closed"):
        assert f"op=breaker {change}" in log, f"no breaker change {change} logged:\n{log[-3000:]}"
    # The 4 payments that met a down gateway were never charged: the
    # reconciler learns that (NOT_FOUND) and gives their holds back.
    for rid in holds[:4]:
        wait_for(f"reservation {rid} back to HELD", lambda: res_status(srv, rid) == "HELD")
    assert len(mockpg.charges()) == 6
    assert_money_matches(srv, mockpg)


@pytest.mark.fault
def test_a_second_failure_in_half_open_opens_again(server, mockpg):
    srv = card_server(server, mockpg, "--pg-timeout", "300ms", "--pg-breaker-window", "2",
                      "--pg-breaker-min-calls", "2", "--pg-breaker-open", "1s")
    holds = [new_hold(srv, uid, [uid])[0] for uid in range(1, 5)]
    mockpg.faults(down=True)
    for uid in (1, 2):
        assert_ok_json(pay(srv, uid, holds[uid - 1], method="card"), 202)
    assert_error(pay(srv, 3, holds[2], method="card"), 503, "GATEWAY_UNAVAILABLE")
    time.sleep(1.1)
    assert_ok_json(pay(srv, 3, holds[2], method="card"), 202)  # the trial fails: open again
    n = mockpg.stats()["chargeRequests"]
    r = pay(srv, 4, holds[3], method="card")
    assert_error(r, 503, "GATEWAY_UNAVAILABLE")
    assert r.headers["Retry-After"] == "1"
    assert mockpg.stats()["chargeRequests"] == n
    mockpg.faults(down=False)
    for rid in holds[:3]:
        wait_for(f"reservation {rid} back to HELD", lambda: res_status(srv, rid) == "HELD")
    assert mockpg.charges() == []
    assert_money_matches(srv, mockpg)


@pytest.mark.fault
def test_slow_gateway_gives_202_pending_then_reconciled_and_the_hold_waits(server, mockpg):
    srv = card_server(server, mockpg, "--pg-timeout", "300ms", hold_ttl="2s")
    rid, sid = new_hold(srv, 6, [20, 21])
    mockpg.faults(latencyMs=3000)
    t0 = time.monotonic()
    body = assert_ok_json(pay(srv, 6, rid, method="card"), 202)
    # Cut at --pg-timeout, well before the gateway's 3 s (slack for a busy machine).
    assert time.monotonic() - t0 < 2.0
    assert body["status"] == "PENDING" and body["amount"] == 2 * PRICE
    got = assert_ok_json(srv.get(f"/api/v1/reservations/{rid}", headers=auth(6)))
    assert got["status"] == "PAYMENT_PENDING"
    # A retry while PENDING asks the gateway about the same key: no new charge.
    assert_ok_json(pay(srv, 6, rid, method="card"), 202)
    # Past the hold's 2 s (lookups still time out): it does not expire.
    time.sleep(2.5)
    assert res_status(srv, rid) == "PAYMENT_PENDING"
    check_invariants(srv.db_path)
    assert not {20, 21} & {s["seatNumber"] for s in seats_of(srv, 1, sid)}
    assert_error(hold(srv, 7, 1, sid, [s for s, in rows(
        srv.db_path, "SELECT seat_id FROM reservation_seats WHERE reservation_id = ?", rid)]),
        409, "SEAT_UNAVAILABLE")
    mockpg.faults(latencyMs=0)
    wait_for("the reconciler to confirm", lambda: res_status(srv, rid) == "CONFIRMED", 5)
    assert [c["idempotencyKey"] for c in mockpg.charges()] == [f"res-{rid}-1"]
    assert_money_matches(srv, mockpg)


@pytest.mark.fault
def test_kill_9_while_the_gateway_charges_ends_with_one_charge_and_confirmed(server, mockpg):
    srv = card_server(server, mockpg, "--pg-timeout", "5s")
    path = srv.db_path
    rid, sid = new_hold(srv, 8, [30])
    mockpg.faults(latencyMs=3000)  # the charge is recorded, then the answer waits
    result = {}

    def paying():
        try:
            result["r"] = pay(srv, 8, rid, method="card")
        except OSError as e:
            result["e"] = e

    t = threading.Thread(target=paying, daemon=True)
    t.start()
    wait_for("mockpg to take the charge", lambda: mockpg.charges(), 5)
    assert res_status(srv, rid) == "PAYMENT_PENDING"  # committed before the gateway was asked
    srv.allowed_signals.add(signal.SIGKILL)
    srv.expect_clean_exit = False
    srv.signal(signal.SIGKILL)
    srv.proc.wait(5)
    t.join(10)
    assert "r" not in result, f"got an answer from a killed server: {result}"
    mockpg.faults(latencyMs=0)
    again = server(db_path=path, do_seed=False, args=["--pg-url", mockpg.url,
                                                       "--pg-timeout", "5s"])
    # The reconciler looks at attempts older than the timeout (5 s).
    wait_for("the reconciler to confirm", lambda: res_status(again, rid) == "CONFIRMED", 15)
    assert [(c["idempotencyKey"], c["status"]) for c in mockpg.charges()] == \
        [(f"res-{rid}-1", "APPROVED")]
    assert_money_matches(again, mockpg)


@pytest.mark.fault
def test_pay_again_after_kill_reconciles_instead_of_charging(server, mockpg):
    srv = card_server(server, mockpg, "--pg-timeout", "5s")
    path = srv.db_path
    rid, _ = new_hold(srv, 9, [40])
    mockpg.faults(latencyMs=3000)
    t = threading.Thread(target=lambda: _swallow(lambda: pay(srv, 9, rid, method="card")),
                         daemon=True)
    t.start()
    wait_for("mockpg to take the charge", lambda: mockpg.charges(), 5)
    srv.allowed_signals.add(signal.SIGKILL)
    srv.expect_clean_exit = False
    srv.signal(signal.SIGKILL)
    srv.proc.wait(5)
    t.join(10)
    mockpg.faults(latencyMs=0)
    again = server(db_path=path, do_seed=False, args=["--pg-url", mockpg.url,
                                                       "--pg-timeout", "5s"])
    # The user pays again at once: the PENDING attempt is looked up, not charged again.
    body = assert_ok_json(pay(again, 9, rid, method="card"), 201)
    assert body["status"] == "COMPLETED"
    assert mockpg.stats()["chargeRequests"] == 1
    assert res_status(again, rid) == "CONFIRMED"
    assert_money_matches(again, mockpg)


def _swallow(fn):
    try:
        fn()
    except OSError:
        pass


@pytest.mark.fault
def test_a_rate_limited_hold_is_refused_while_every_write_worker_waits(server, mockpg):
    """The abuse limits are decided on the event thread, before a request
    is handed to the write pool (docs/architecture.md): with the only write
    worker stuck on a slow gateway, four holds of one user (a bucket of one)
    sent at once: one is let through and waits for the worker, and the
    rest get their 429 at once rather than after the gateway's 3 s."""
    srv = card_server(server, mockpg, "--write-workers", "1", "--pg-timeout", "5s",
                      "--limit-hold-user", "1", "--limit-burst", "1")
    rid, sid = new_hold(srv, 9, [40])
    seat = {s["seatNumber"]: s["seatId"] for s in seats_of(srv, 1, sid)}
    mockpg.faults(latencyMs=3000)
    result = {}
    t = threading.Thread(target=lambda: result.update(r=pay(srv, 9, rid, method="card")),
                         daemon=True)
    t.start()
    wait_for("mockpg to take the charge", lambda: mockpg.charges(), 5)

    def timed_hold(i):
        t0 = time.monotonic()
        r = hold(srv, 3, 1, sid, [seat[41 + i]])
        return r, time.monotonic() - t0
    got = race(4, timed_hold)
    refused = [took for r, took in got if r.status == 429]
    assert [r.status for r, _ in got].count(201) >= 1, got
    assert len(refused) >= 2, got  # a bucket of one refills once a second
    for r, _ in got:
        if r.status == 429:
            assert_error(r, 429, "RATE_LIMITED", "user")
    assert max(refused) < 1.5, f"429s waited for the write pool: {sorted(refused)}"
    t.join(10)
    assert result["r"].status == 201
    mockpg.faults(latencyMs=0)
    assert_money_matches(srv, mockpg)
