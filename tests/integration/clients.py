"""The reference clients of the two field reports, as the tests drive them.

Each function is one user of a load scenario doing what that report's
client does, step by step, over a booking_util.Client (one keep-alive
connection). The k6 scripts in loadtest/k6/ do the same steps; these are
the Python twins the tests can run against a real concertd and check:

  v1_queue_user        scenario 1: enter the waiting room, poll every few
                       seconds until ACTIVATED
  v1_booking_user      scenario 2: sessions[].sessionId -> availableSeats[].seatId
                       -> hold 1-2 seats at random -> pay with the hold's
                       reservationId, and pay even when the hold failed
                       (then there is no reservationId to send)
  classic_flow_user    scenario 3: token -> poll /api/token/status until
                       `true` -> concerts -> schedules -> seats (a bare
                       array, seatId = seat number) -> reserve -> pay
  classic_balance_user scenario 4: read the balance, charge
                       amount = last read + 6000

Every exchange goes into a Log: (step, status, error code, response), with
status None when the exchange itself failed.
"""

import threading
import time

from conftest import active_token

BALANCE_STEP = 6000  # the classic balance client charges what it read + this


class Log:
    """Thread-safe record of every exchange of a scenario."""

    def __init__(self):
        self.entries = []
        self._mu = threading.Lock()

    def add(self, step, resp):
        code = None
        if resp is not None and isinstance(resp.json, dict) and isinstance(
                resp.json.get("error"), dict):
            code = resp.json["error"].get("code")
        with self._mu:
            self.entries.append((step, None if resp is None else resp.status, code, resp))
        return resp

    def failures(self):
        """Exchanges that failed outright or got a 5xx."""
        return [e for e in self.entries if e[1] is None or e[1] >= 500]

    def non_2xx(self):
        return [e for e in self.entries if e[1] is None or not 200 <= e[1] < 300]

    def count(self, step, status=None):
        return sum(1 for e in self.entries if e[0] == step and (status is None or e[1] == status))

    def summary(self):
        out = {}
        for step, status, code, _ in self.entries:
            key = f"{step} {status}{' ' + code if code else ''}"
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items()))


def _ok(resp):
    return resp is not None and 200 <= resp.status < 300 and resp.json is not None


def _wait(deadline, every):
    time.sleep(max(0.0, min(every, deadline - time.monotonic())))


# ---------------------------------------------------------------------------
# The first report's clients (v1 API)


def v1_queue_user(c, uid, log, poll_every=3.0, timeout=30.0):
    """Enters the waiting room, then polls every poll_every seconds until
    ACTIVATED. Returns the last status body (None when something failed)."""
    r = log.add("enter", c.request("POST", "/api/v1/waiting-queues", {"userId": uid}))
    if not _ok(r):
        return None
    body, token = r.json, r.json.get("token")
    deadline = time.monotonic() + timeout
    while body.get("status") != "ACTIVATED" and time.monotonic() < deadline:
        _wait(deadline, poll_every)
        r = log.add("poll", c.request("GET", "/api/v1/waiting-queues",
                                      headers={"QUEUE-TOKEN": token}))
        if not _ok(r):
            return None
        body = r.json
    return body


def v1_booking_user(c, uid, rng, log, cid=1, token=None):
    """One pass of the booking client. Returns (hold response, payment response)."""
    h = {"QUEUE-TOKEN": token or active_token(uid)}
    r = log.add("sessions", c.request("GET", f"/api/v1/concerts/{cid}/sessions", headers=h))
    if not _ok(r) or not r.json["sessions"]:
        return None, None
    sid = rng.choice([s["sessionId"] for s in r.json["sessions"]])
    r = log.add("seats", c.request("GET", f"/api/v1/concerts/{cid}/sessions/{sid}/seats",
                                   headers=h))
    if not _ok(r) or not r.json["availableSeats"]:
        return None, None
    seat_ids = [s["seatId"] for s in r.json["availableSeats"]]
    picked = rng.sample(seat_ids, min(len(seat_ids), rng.randint(1, 2)))
    hold = log.add("hold", c.request("POST", f"/api/v1/concerts/{cid}/sessions/{sid}/reservations",
                                     {"userId": uid, "seatIds": picked}, headers=h))
    # The client reads reservationId from whatever came back and pays
    # regardless: after a failed hold it is undefined, which JSON.stringify
    # leaves out of the body.
    body = {"userId": uid}
    rid = hold.json.get("reservationId") if hold is not None and isinstance(hold.json, dict) \
        else None
    if rid is not None:
        body["reservationId"] = rid
    pay = log.add("pay", c.request("POST", "/api/v1/payments", body, headers=h))
    return hold, pay


# ---------------------------------------------------------------------------
# The second report's clients (classic API)


def wait_active(c, uid, log, poll_every=1.0, timeout=30.0):
    """Polls GET /api/token/status/{uid} until the raw body is `true`.
    Returns True when it was, False on a failure or the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        r = log.add("status", c.request("GET", f"/api/token/status/{uid}"))
        if r is None or r.status != 200 or r.raw not in (b"true", b"false"):
            return False
        if r.raw == b"true":
            return True
        if time.monotonic() >= deadline:
            return False
        _wait(deadline, poll_every)


def classic_flow_user(c, uid, rng, log, poll_every=1.0, timeout=30.0, attempts=3,
                      uid_as_string=False):
    """token -> wait for ACTIVATED -> concerts -> schedules -> seats ->
    reserve -> pay. A reservation refused because a seat was taken in the
    meantime is retried with a fresh seat list, up to `attempts` times.
    Returns the payment response, or None when the user did not get to pay."""
    who = str(uid) if uid_as_string else uid
    if not _ok(log.add("token", c.request("POST", "/api/token", {"userId": who}))):
        return None
    if not wait_active(c, uid, log, poll_every, timeout):
        return None
    r = log.add("concerts", c.request("GET", "/api/concerts"))
    if not _ok(r) or not r.json:
        return None
    cid = rng.choice([x["concertId"] for x in r.json])
    r = log.add("schedules", c.request("GET", f"/api/concerts/schedules/{cid}"))
    if not _ok(r) or not r.json:
        return None
    sid = rng.choice([x["scheduleId"] for x in r.json])
    for _ in range(attempts):
        r = log.add("seats", c.request("GET", f"/api/concerts/seats/{sid}"))
        if not _ok(r) or not r.json:
            return None
        seats = [x["seatId"] for x in r.json]
        picked = rng.sample(seats, min(len(seats), rng.randint(1, 2)))
        hold = log.add("reserve", c.request("POST", "/api/reservations/seats", {
            "userId": who, "concertId": cid, "scheduleId": sid, "seatIdList": picked}))
        if _ok(hold):
            return log.add("pay", c.request("POST", "/api/reservations/payments", {
                "userId": who, "reservationId": hold.json["reservationId"],
                "amount": hold.json["totalPrice"]}))
        if hold is None or hold.status != 409:
            return None
    return None


def classic_balance_user(c, uid, log):
    """Reads the balance, then charges what it read + 6000. Returns
    (balance read, amount sent, balance answered) or None."""
    r = log.add("balance", c.request("GET", f"/api/balance/{uid}"))
    if not _ok(r):
        return None
    last = r.json["amount"]
    sent = last + BALANCE_STEP
    r = log.add("charge", c.request("PUT", "/api/balance/charge", {"userId": uid, "amount": sent}))
    if not _ok(r):
        return None
    return last, sent, r.json["amount"]
