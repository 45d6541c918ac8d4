"""Optional user authentication (--auth-jwt-secret, docs/security.md):
every user-scoped route, v1 and classic, needs a bearer HS256 JWT whose sub
is the user acted for. Forged, expired, malformed and other users' tokens
are each a 401/403 with a JSON error, and change nothing."""

import pytest

from booking_util import auth, hold, pay, seats_of, sessions_of
from conftest import assert_error, assert_ok_json
from security_util import SECRET, assert_unchanged, bearer, jwt, state

PRICE = 5000


@pytest.fixture
def srv(server):
    s = server(seed=["--price", str(PRICE), "--balance", "100000"],
               args=["--auth-jwt-secret", SECRET])
    s.cid = 1
    s.sid = sessions_of_with_auth(s, 1)
    return s


def sessions_of_with_auth(s, cid):
    r = s.get(f"/api/v1/concerts/{cid}/sessions", headers={**auth(1), **bearer(1)})
    return assert_ok_json(r)["sessions"][0]["sessionId"]


def free_seats(s, n=2):
    r = s.get(f"/api/v1/concerts/{s.cid}/sessions/{s.sid}/seats", headers={**auth(1), **bearer(1)})
    return [x["seatId"] for x in assert_ok_json(r)["availableSeats"][:n]]


def held(s, uid=1):
    """A HELD reservation of uid, made with uid's JWT."""
    seats = free_seats(s, 1)
    r = hold(s, uid, s.cid, s.sid, seats, headers={**auth(uid), **bearer(uid)})
    return assert_ok_json(r, 201)["reservationId"]


# (name, method, path, body, queue-token user) for every user-scoped route,
# each acting for user 1.
def routes(rid):
    return [
        ("v1 enter", "POST", "/api/v1/waiting-queues", {"userId": 1}, None),
        ("v1 poll", "GET", "/api/v1/waiting-queues", None, 1),
        ("v1 sessions", "GET", "/api/v1/concerts/1/sessions", None, 1),
        ("v1 reservation", "GET", f"/api/v1/reservations/{rid}", None, 1),
        ("v1 cancel", "DELETE", f"/api/v1/reservations/{rid}", None, 1),
        ("v1 balance", "GET", "/api/v1/users/1/balance", None, None),
        ("v1 charge", "POST", "/api/v1/users/1/balance/charge", {"amount": 1000}, None),
        ("v1 pay", "POST", "/api/v1/payments", {"userId": 1, "reservationId": rid}, 1),
        ("v1 leave", "DELETE", "/api/v1/waiting-queues", None, 1),
        ("classic enter", "POST", "/api/token", {"userId": 1}, None),
        ("classic token", "GET", "/api/token/1", None, None),
        ("classic status", "GET", "/api/token/status/1", None, None),
        ("classic balance", "GET", "/api/balance/1", None, None),
        ("classic charge", "PUT", "/api/balance/charge", {"userId": 1, "amount": 1000}, None),
        ("classic hold", "POST", "/api/reservations/seats",
         {"userId": 1, "concertId": 1, "scheduleId": 1, "seatIdList": [40]}, None),
        ("classic pay", "POST", "/api/reservations/payments",
         {"userId": 1, "reservationId": rid, "amount": PRICE}, None),
    ]


def send(s, method, path, body, token_user, headers):
    h = dict(headers)
    if token_user:
        h.update(auth(token_user))
    return s.request(method, path, body=body, headers=h, token=None)


# Made when a test runs, not at import: the exp of a token made at import
# would pass during a long suite.
BAD = {
    "missing": lambda: ({}, "AUTH_REQUIRED"),
    "not bearer": lambda: ({"Authorization": "Basic dXNlcjE6cGFzcw=="}, "AUTH_INVALID"),
    "empty bearer": lambda: ({"Authorization": "Bearer "}, "AUTH_INVALID"),
    "garbage": lambda: ({"Authorization": "Bearer not.a.jwt"}, "AUTH_INVALID"),
    "other secret": lambda: (bearer(1, secret="wrong"), "AUTH_INVALID"),
    "alg none": lambda: (bearer(1, alg="none"), "AUTH_INVALID"),
    "HS512": lambda: (bearer(1, alg="HS512"), "AUTH_INVALID"),
    # RFC 7515: alg is case-sensitive; libjwt 1.10 alone took this for HS256.
    "alg Hs256": lambda: (bearer(1, header={"alg": "Hs256", "typ": "JWT"}), "AUTH_INVALID"),
    "expired": lambda: (bearer(1, exp_in=-10), "AUTH_EXPIRED"),
    "no exp": lambda: (bearer(1, exp_in=None), "AUTH_INVALID"),
    "not yet valid": lambda: (bearer(1, extra={"nbf": 4102444800}), "AUTH_INVALID"),
    "no sub": lambda: ({"Authorization": "Bearer " + jwt(None)}, "AUTH_INVALID"),
    "sub not a user": lambda: (bearer("1 OR 1=1"), "AUTH_INVALID"),
    "tampered": lambda: (tampered(), "AUTH_INVALID"),
}


def tampered():
    """User 2's token with its payload swapped for user 1's, signature kept."""
    h2, _, sig2 = jwt("2").split(".")
    _, p1, _ = jwt("1").split(".")
    return {"Authorization": f"Bearer {h2}.{p1}.{sig2}"}


@pytest.mark.parametrize("bad", list(BAD))
def test_every_user_route_refuses_a_bad_bearer_token_and_changes_nothing(srv, bad):
    rid = held(srv)
    headers, code = BAD[bad]()
    before = state(srv.db_path)
    for name, method, path, body, tu in routes(rid):
        r = send(srv, method, path, body, tu, headers)
        assert_error(r, 401, code)
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), (name, r)
    assert_unchanged(before, state(srv.db_path))
    # The queue token was not left or expired by any of it.
    assert assert_ok_json(srv.get("/api/v1/waiting-queues", headers={**auth(1), **bearer(1)}))[
        "status"] == "ACTIVATED"


def test_another_users_token_is_403_on_every_route_and_changes_nothing(srv):
    rid = held(srv)
    before = state(srv.db_path)
    for name, method, path, body, tu in routes(rid):
        r = send(srv, method, path, body, tu, bearer(2))
        assert_error(r, 403, "FORBIDDEN"), name
    assert_unchanged(before, state(srv.db_path))


def test_own_token_is_served_on_every_route(srv):
    rid = held(srv)
    ok = {}
    for name, method, path, body, tu in routes(rid):
        if name in ("v1 cancel", "v1 leave", "v1 pay"):
            continue  # would undo what the routes after them need (classic pay pays rid last)
        r = send(srv, method, path, body, tu, bearer(1))
        ok[name] = r.status
    assert all(200 <= s < 300 for s in ok.values()), ok


def test_cross_user_reservation_payment_and_balance_with_auth_on(srv):
    """User 2, with a valid JWT and an ACTIVATED queue token of its own,
    cannot read, cancel or pay user 1's hold, nor read or charge user 1's
    balance, through either API."""
    rid = held(srv, 1)
    before = state(srv.db_path)
    mine = {**auth(2), **bearer(2)}
    assert_error(srv.get(f"/api/v1/reservations/{rid}", headers=mine, token=None), 403, "FORBIDDEN")
    assert_error(srv.delete(f"/api/v1/reservations/{rid}", headers=mine, token=None), 403,
                 "FORBIDDEN")
    assert_error(pay(srv, 1, rid, headers=mine), 403, "FORBIDDEN")
    assert_error(pay(srv, 2, rid, headers=mine), 403, "FORBIDDEN")
    assert_error(srv.get("/api/v1/users/1/balance", headers=bearer(2), token=None), 403,
                 "FORBIDDEN")
    assert_error(srv.post("/api/v1/users/1/balance/charge", {"amount": 5},
                          headers=bearer(2), token=None), 403, "FORBIDDEN")
    assert_error(srv.request("POST", "/api/reservations/payments",
                             {"userId": 1, "reservationId": rid, "amount": PRICE},
                             headers=bearer(2), token=None), 403, "FORBIDDEN")
    assert_error(srv.request("POST", "/api/reservations/payments",
                             {"userId": 2, "reservationId": rid, "amount": PRICE},
                             headers=bearer(2), token=None), 403, "FORBIDDEN")
    assert_error(srv.get("/api/balance/1", headers={"userId": "2", **bearer(2)}, token=None), 403,
                 "FORBIDDEN")
    assert_unchanged(before, state(srv.db_path))
    # And user 1's own token still pays it.
    r = pay(srv, 1, rid, headers={**auth(1), **bearer(1)})
    assert assert_ok_json(r, 201)["status"] == "COMPLETED"


def test_a_stolen_queue_token_is_useless_without_its_owners_jwt(srv):
    """User 2 holds user 1's QUEUE-TOKEN and a JWT of its own."""
    seats = free_seats(srv, 1)
    before = state(srv.db_path)
    r = hold(srv, 2, srv.cid, srv.sid, seats, headers={**auth(1), **bearer(2)})
    assert_error(r, 403, "FORBIDDEN")
    r = hold(srv, 1, srv.cid, srv.sid, seats, headers={**auth(1), **bearer(2)})
    assert_error(r, 403, "FORBIDDEN")
    assert_unchanged(before, state(srv.db_path))


def test_sub_may_be_a_json_integer(srv):
    tok = jwt(None, extra={"sub": 1})
    r = srv.get("/api/v1/users/1/balance", headers={"Authorization": f"Bearer {tok}"}, token=None)
    assert assert_ok_json(r)["userId"] == 1


def test_auth_is_off_by_default(server):
    s = server()
    assert assert_ok_json(s.get("/api/v1/users/1/balance", token=None))["userId"] == 1
    # A bearer token is ignored, not checked, when auth is off.
    r = s.get("/api/v1/users/1/balance", headers={"Authorization": "Bearer junk"}, token=None)
    assert r.status == 200


def test_public_routes_need_no_token_with_auth_on(srv):
    for path in ("/api/v1/concerts", "/api/v1/waiting-queues/stats", "/api/concerts",
                 "/health/live", "/metrics"):
        assert srv.get(path, token=None).status == 200, path
