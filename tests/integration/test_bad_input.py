"""Bad input from a hostile client (DESIGN.md invariant 6): negative, zero,
fractional, huge and overflowing amounts; SQL-injection strings in every
field, header, path and query; invalid UTF-8; huge and deeply nested
bodies; header and URL floods. Each is a 4xx with a JSON error, and the
database is exactly as it was."""

import json
import socket

import pytest

from booking_util import auth, hold, sessions_of, seats_of
from conftest import assert_error, assert_json_ct, assert_ok_json, http_request, read_response
from security_util import assert_unchanged, state

PRICE = 5000


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from conftest import ServerFactory
    f = ServerFactory(tmp_path_factory.mktemp("badinput"))
    s = f(seed=["--price", str(PRICE), "--balance", "100000"])
    s.sid = sessions_of(s, 1)[0]["sessionId"]
    s.seats = [x["seatId"] for x in seats_of(s, 1, s.sid)]
    # One live hold of user 1 for the payment attacks.
    s.rid = assert_ok_json(hold(s, 1, 1, s.sid, [s.seats[0]]), 201)["reservationId"]
    yield s
    f.teardown()


def raw_post(srv, method, path, body, headers=None):
    h = {"Content-Type": "application/json", **(headers or {})}
    return http_request(srv.host, srv.port, method, path, body, h)


def refused(srv, method, path, body, headers=None, status=400, code="INVALID_REQUEST"):
    """Sends body (bytes, or JSON-encoded) and asserts a JSON 4xx and no change."""
    if not isinstance(body, (bytes, type(None))):
        body = json.dumps(body).encode()
    before = state(srv.db_path)
    r = raw_post(srv, method, path, body, headers)
    assert_error(r, status, code)
    assert_unchanged(before, state(srv.db_path))
    return r


# ---- amounts --------------------------------------------------------------------

BAD_AMOUNTS = [-1, 0, -9223372036854775808, 1.5, 0.0001, 1e3, "1000", "", None, True, [1000],
               {"v": 1}, 9223372036854775808, 10 ** 30, -(10 ** 30)]
BAD_AMOUNT_TEXT = [b"1e400", b"-0", b"NaN", b"Infinity", b"0x10", b"1" * 400, b"01000", b"+5"]


@pytest.mark.parametrize("amount", BAD_AMOUNTS, ids=repr)
def test_bad_charge_amounts_are_400(srv, amount):
    refused(srv, "POST", "/api/v1/users/2/balance/charge", {"amount": amount})
    refused(srv, "PUT", "/api/balance/charge", {"userId": 2, "amount": amount})


@pytest.mark.parametrize("text", BAD_AMOUNT_TEXT, ids=lambda t: t[:12].decode())
def test_bad_amount_literals_are_400(srv, text):
    refused(srv, "POST", "/api/v1/users/2/balance/charge", b'{"amount":' + text + b"}")


def test_charge_over_max_charge_and_balance_overflow_are_400(server):
    s = server(args=["--max-charge", "9223372036854775807"])
    assert assert_ok_json(s.post("/api/v1/users/3/balance/charge",
                                 {"amount": 9223372036854775000}))["balance"] > 0
    before = state(s.db_path)
    r = s.post("/api/v1/users/3/balance/charge", {"amount": 10000})
    assert_error(r, 400, "INVALID_REQUEST", "overflow")
    assert_unchanged(before, state(s.db_path))
    d = server()  # default --max-charge 10,000,000
    assert_error(d.post("/api/v1/users/3/balance/charge", {"amount": 10000001}), 400,
                 "INVALID_REQUEST")


@pytest.mark.parametrize("amount", [-PRICE, 0, PRICE + 0.5, PRICE - 1, PRICE + 1, 10 ** 30,
                                    str(PRICE), None], ids=repr)
def test_bad_classic_payment_amounts_change_nothing(srv, amount):
    before = state(srv.db_path)
    r = raw_post(srv, "POST", "/api/reservations/payments",
                 json.dumps({"userId": 1, "reservationId": srv.rid, "amount": amount}).encode())
    assert 400 <= r.status < 500, r
    assert_json_ct(r)
    assert "error" in r.json, r
    assert_unchanged(before, state(srv.db_path))


# ---- SQL injection ------------------------------------------------------------------

SQLI = ["1 OR 1=1", "1; DROP TABLE users; --", "1' OR '1'='1", "' UNION SELECT * FROM users --",
        "1) OR (1=1", "\" OR \"\"=\"", "1/**/OR/**/1=1", "%27%20OR%201=1"]


@pytest.mark.parametrize("inj", SQLI)
def test_sql_injection_in_every_body_field_is_400(srv, inj):
    u = {"QUEUE-TOKEN": auth(1)["QUEUE-TOKEN"]}
    cases = [
        ("POST", "/api/v1/waiting-queues", {"userId": inj}),
        ("POST", f"/api/v1/concerts/1/sessions/{srv.sid}/reservations",
         {"userId": inj, "seatIds": [srv.seats[1]]}),
        ("POST", f"/api/v1/concerts/1/sessions/{srv.sid}/reservations",
         {"userId": 1, "seatIds": [inj]}),
        ("POST", "/api/v1/users/1/balance/charge", {"amount": inj}),
        ("POST", "/api/v1/payments", {"userId": inj, "reservationId": srv.rid}),
        ("POST", "/api/v1/payments", {"userId": 1, "reservationId": inj}),
        ("POST", "/api/v1/payments", {"userId": 1, "reservationId": srv.rid, "method": inj}),
        ("POST", "/api/token", {"userId": inj}),
        ("PUT", "/api/balance/charge", {"userId": inj, "amount": 1000}),
        ("PUT", "/api/balance/charge", {"userId": 1, "amount": inj}),
        ("POST", "/api/reservations/seats",
         {"userId": 1, "concertId": inj, "scheduleId": srv.sid, "seatIdList": [2]}),
        ("POST", "/api/reservations/seats",
         {"userId": 1, "concertId": 1, "scheduleId": inj, "seatIdList": [2]}),
        ("POST", "/api/reservations/seats",
         {"userId": 1, "concertId": 1, "scheduleId": srv.sid, "seatIdList": [inj]}),
        ("POST", "/api/reservations/payments",
         {"userId": 1, "reservationId": inj, "amount": PRICE}),
        ("PUT", "/api/v1/admin/waiting-room", {"maxActive": inj}),
    ]
    for method, path, body in cases:
        before = state(srv.db_path)
        r = raw_post(srv, method, path, json.dumps(body).encode(), u)
        assert 400 <= r.status < 500, (method, path, body, r)
        assert_json_ct(r)
        assert isinstance(r.json, dict) and "error" in r.json, r
        assert_unchanged(before, state(srv.db_path))
    # Injection in a key name is an unknown field.
    refused(srv, "POST", "/api/v1/users/1/balance/charge", {"amount": 1, inj: 1})


@pytest.mark.parametrize("inj", SQLI)
def test_sql_injection_in_headers_path_and_query_is_4xx(srv, inj):
    from urllib.parse import quote
    before = state(srv.db_path)
    q = quote(inj, safe="")
    checks = [
        (srv.get(f"/api/v1/users/{q}/balance", token=None), (400, 404)),  # a "/" in it: 404
        (srv.get(f"/api/balance/{q}", token=None), (400, 404)),
        (srv.get(f"/api/v1/concerts/1/sessions/{srv.sid}/seats?limit={q}"), 400),
        (srv.get(f"/api/v1/concerts/1/sessions/{srv.sid}/seats?after={q}"), 400),
        (srv.get(f"/api/concerts/seats/{srv.sid}?page={q}", token=None), 400),
        (srv.get("/api/v1/waiting-queues", token=inj), 401),
        (srv.get("/api/balance/1", headers={"userId": inj}, token=None), 400),
        (srv.post("/api/v1/users/1/balance/charge", {"amount": 1},
                  headers={"Idempotency-Key": inj + "\x01"}), 400),
    ]
    for r, status in checks:
        assert r.status in (status if isinstance(status, tuple) else (status,)), r
        assert_json_ct(r)
        assert "error" in r.json, r
    assert_unchanged(before, state(srv.db_path))


# ---- encodings and sizes --------------------------------------------------------------

INVALID_UTF8 = [b'{"userId":"\xff"}', b'{"userId":"1\xc0\xaf"}', b'{"userId":"\xed\xa0\x80"}',
                b'{"userId":"\xf4\x90\x80\x80"}', b'{"user\xe2\x82Id":1}', b'{"userId":"\\ud800"}',
                b'\xef\xbb\xbf{"userId":1}', b'{"userId":1}\x00', b'{"userId":"1\x00"}']


@pytest.mark.parametrize("body", INVALID_UTF8, ids=lambda b: b.hex()[:24])
def test_invalid_utf8_and_nul_are_400(srv, body):
    refused(srv, "POST", "/api/v1/waiting-queues", body)
    refused(srv, "PUT", "/api/balance/charge", body)


@pytest.mark.parametrize("depth", [17, 100, 10000])  # 10,000 levels: just under 64 KiB
def test_deeply_nested_bodies_are_400(srv, depth):
    for opener, closer in ((b"[", b"]"), (b'{"a":', b"}")):
        body = b'{"userId":' + opener * depth + b"1" + closer * depth + b"}"
        r = refused(srv, "POST", "/api/v1/waiting-queues", body)
        assert "deep" in r.json["error"]["message"] or "nest" in r.json["error"]["message"]


def test_long_strings_are_400(srv):
    r = refused(srv, "POST", "/api/v1/payments",
                {"userId": 1, "reservationId": srv.rid, "method": "b" * 5000},
                headers=auth(1))
    assert "long" in r.json["error"]["message"] or "4096" in r.json["error"]["message"]


def test_huge_bodies_are_413(srv):
    body = b'{"userId":1,"pad":"' + b"x" * 70 * 1024 + b'"}'
    refused(srv, "POST", "/api/v1/waiting-queues", body, status=413, code="PAYLOAD_TOO_LARGE")
    before = state(srv.db_path)
    # 4 GiB announced: refused before a byte of it is read.
    json_error(raw(srv, b"POST /api/v1/users/1/balance/charge HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Type: application/json\r\nContent-Length: 4294967296\r\n\r\n"
                        b'{"amount":1000'), 413, "PAYLOAD_TOO_LARGE")
    assert_unchanged(before, state(srv.db_path))


def test_huge_arrays_are_refused(srv):
    path = f"/api/v1/concerts/1/sessions/{srv.sid}/reservations"
    r = refused(srv, "POST", path, {"userId": 1, "seatIds": list(range(1, 10001))},
                headers=auth(1))
    assert "10000" in r.json["error"]["message"]
    refused(srv, "POST", path, {"userId": 1, "seatIds": list(range(1, 20001))}, headers=auth(1),
            status=413, code="PAYLOAD_TOO_LARGE")
    refused(srv, "POST", "/api/reservations/seats",
            {"userId": 1, "concertId": 1, "scheduleId": srv.sid, "seatIdList": [1] * 5000})


# ---- header and URL floods -------------------------------------------------------------


def raw(srv, data):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    try:
        s.sendall(data)
        return read_response(s)[0]
    finally:
        s.close()


def json_error(resp, status, code):
    assert resp.status == status, resp
    assert json.loads(resp.body)["error"]["code"] == code, resp


def test_header_flood_is_431(srv):
    """Headers over --max-header-bytes that still fit libmicrohttpd's
    per-connection pool (2 x the limit + 4 KiB) get our JSON 431. A flood
    past the pool (each header costs libmicrohttpd ~60 bytes of it besides
    its text) gets libmicrohttpd's own 431, whose body is HTML
    (docs/security.md). Either way nothing changes and the server lives."""
    before = state(srv.db_path)
    charge = (b"POST /api/v1/users/1/balance/charge HTTP/1.1\r\nHost: x\r\n%b"
              b"Content-Type: application/json\r\nContent-Length: 15\r\n\r\n"
              b'{"amount":1000}')
    json_error(raw(srv, charge % b"".join(b"X-F%d: %b\r\n" % (i, b"v" * 80) for i in range(100))),
               431, "HEADERS_TOO_LARGE")
    json_error(raw(srv, b"GET /health/live HTTP/1.1\r\nHost: x\r\nCookie: " + b"c" * 9000 +
                   b"\r\n\r\n"), 431, "HEADERS_TOO_LARGE")
    json_error(raw(srv, b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + b"a:\r\n" * 150 +
                   b"X-Pad: " + b"p" * 8000 + b"\r\n\r\n"), 431, "HEADERS_TOO_LARGE")
    for flood in (b"a:\r\n" * 2000, b"".join(b"X-F%d: v\r\n" % i for i in range(900)),
                  b"".join(b"X-F%d: v\r\n" % i for i in range(2000))):
        r = raw(srv, charge % flood)
        assert r.status == 431, r
        assert r.headers.get("connection", "").lower() == "close", r
    assert_unchanged(before, state(srv.db_path))
    srv.assert_live("after a header flood")


def test_url_flood_is_431_json(srv):
    before = state(srv.db_path)
    for n in (65, 600):  # more than --max-header-bytes / 128 parameters
        q = "&".join(f"p{i}=1" for i in range(n))
        r = srv.get(f"/api/v1/concerts/1/sessions/{srv.sid}/seats?{q}")
        assert_error(r, 431, "HEADERS_TOO_LARGE")
    # A request line longer than the connection's whole memory pool (2 x
    # --max-header-bytes + 4 KiB) never reaches concertd: libmicrohttpd
    # answers 414 itself (HTML, docs/security.md). Still a 4xx, and the
    # server lives.
    for n in (3000, 30000):
        q = "&".join(f"p{i}=1" for i in range(n))
        try:
            r = srv.get(f"/api/v1/concerts?{q}", token=None)
            assert r.status in (414, 431), r
        except (BrokenPipeError, ConnectionResetError):
            pass  # it answered and closed while the client was still sending
    srv.assert_live("after a request line larger than the pool")
    json_error(raw(srv, b"GET /api/v1/concerts?" + b"a&" * 4000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
               431, "HEADERS_TOO_LARGE")
    r = srv.get("/api/v1/" + "a/" * 5000, token=None)
    assert_error(r, 431, "HEADERS_TOO_LARGE")
    # A few parameters are fine, long ones too.
    assert srv.get("/api/v1/concerts?" + "&".join(f"p{i}={'v' * 100}" for i in range(64)),
                   token=None).status == 200
    r = srv.get("/api/v1/users/" + "9" * 5000 + "/balance", token=None)
    assert r.status in (400, 431), r
    assert_json_ct(r)
    assert_unchanged(before, state(srv.db_path))


def test_duplicate_and_unknown_fields_are_400(srv):
    refused(srv, "POST", "/api/v1/users/2/balance/charge", b'{"amount":1000,"amount":1000}')
    refused(srv, "POST", "/api/v1/users/2/balance/charge", {"amount": 1000, "userId": 3})
    refused(srv, "POST", "/api/v1/users/2/balance/charge", b'[{"amount":1000}]')
    refused(srv, "POST", "/api/v1/users/2/balance/charge", b'{"amount":1000')
    refused(srv, "POST", "/api/v1/users/2/balance/charge", b"")
