"""Observability of one concertd (issue 9): the domain counters of /metrics
(holds, payments by method and result, group commit latency and batch
size), the access log (one line per request, text or JSON, off-able, never
a token or an admin key) and X-Request-Id (kept when sane, else made, and
echoed on every response)."""

import json
import re
import time

from booking_util import auth, hold, pay
from conftest import active_token
from test_gateway import card_server, new_hold
from test_gateway import mockpg  # noqa: F401  (the fixture)
from test_metrics import scrape, value


def wait_metrics(srv, ok, timeout=5.0):
    """Scrapes until ok(text) holds (requests are counted after their
    response is sent); returns the text, or fails with it."""
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(srv)
        if ok(text):
            return text
        assert time.monotonic() < deadline, text
        time.sleep(0.05)


def seat_ids(srv, sid, n):
    r = srv.get(f"/api/v1/concerts/1/sessions/{sid}/seats?limit={n}")
    assert r.status == 200, r
    return [s["seatId"] for s in r.json["availableSeats"]]


def test_holds_and_balance_payments_are_counted(server):
    # Every seat costs 1000; each user has 1500: one seat payable, two not.
    srv = server(seed=["--price", "1000", "--users", "10", "--balance", "1500"],
                 args=["--hold-ttl", "2s"])
    seats = seat_ids(srv, 1, 10)
    r1 = hold(srv, 1, 1, 1, [seats[0]])
    r2 = hold(srv, 2, 1, 1, [seats[1], seats[2]])
    r3 = hold(srv, 3, 1, 1, [seats[3]])  # left to expire
    assert r1.status == r2.status == r3.status == 201, (r1, r2, r3)
    assert pay(srv, 1, r1.json["reservationId"], key="k1").status == 201
    # A replayed payment is not a second payment; a refused request is none.
    assert pay(srv, 1, r1.json["reservationId"], key="k1").status == 201
    assert pay(srv, 2, r2.json["reservationId"]).status == 402
    assert pay(srv, 4, 999999).status == 404
    text = wait_metrics(srv, lambda t: value(t, "concertd_holds_total", event="expired") == 2)
    # r2 was never paid either: both unpaid holds expire.
    assert value(text, "concertd_holds_total", event="created") == 3
    assert value(text, "concertd_holds_total", event="confirmed") == 1
    assert value(text, "concertd_payments_total", method="balance", result="completed") == 1
    assert value(text, "concertd_payments_total", method="balance",
                 result="insufficient_balance") == 1
    assert value(text, "concertd_payments_total", method="balance", result="error") == 0
    # Paying the expired hold is refused as not payable.
    assert pay(srv, 3, r3.json["reservationId"]).status == 409
    text = wait_metrics(srv, lambda t: value(t, "concertd_payments_total", method="balance",
                                             result="not_payable") == 1)


def test_commit_histograms_agree_with_the_commit_totals(server):
    srv = server()
    for _ in range(5):
        assert srv.post("/api/v1/users/7/balance/charge", {"amount": 10}).status == 200
    text = scrape(srv)
    commits = value(text, "concertd_store_commits_total")
    jobs = value(text, "concertd_store_commit_jobs_total")
    assert commits >= 5
    assert value(text, "concertd_store_commit_duration_seconds_count") == commits
    assert value(text, "concertd_store_commit_duration_seconds_bucket", le="+Inf") == commits
    assert value(text, "concertd_store_commit_duration_seconds_sum") > 0
    assert value(text, "concertd_store_commit_batch_size_count") == commits
    assert value(text, "concertd_store_commit_batch_size_sum") == jobs
    # Buckets are cumulative.
    b = [float(x) for x in re.findall(
        r'^concertd_store_commit_duration_seconds_bucket\{le="[^"]+"\} (\S+)$', text, re.M)]
    assert b == sorted(b) and b[-1] == commits


def test_card_payments_are_counted_by_result(server, mockpg):
    srv = card_server(server, mockpg, "--pg-timeout", "300ms", "--pg-breaker-window", "2",
                      "--pg-breaker-min-calls", "2", "--pg-breaker-failure-rate", "100",
                      "--pg-breaker-open", "30s")
    # (user 1's token stays ACTIVATED: new_hold reads the sessions with it)
    rid, _ = new_hold(srv, 2, [1])
    assert pay(srv, 2, rid, method="card").status == 201
    mockpg.faults(declineRate=1)
    rid, _ = new_hold(srv, 3, [2])
    assert pay(srv, 3, rid, method="card").status == 402
    mockpg.faults(declineRate=0, down=True)
    for uid, seat in ((4, 3), (5, 4)):  # unknown answers: PENDING, and the breaker opens
        rid, _ = new_hold(srv, uid, [seat])
        assert pay(srv, uid, rid, method="card").status == 202
    rid, _ = new_hold(srv, 6, [5])
    r = pay(srv, 6, rid, method="card")
    assert r.status == 503 and r.headers.get("Retry-After"), r
    text = wait_metrics(srv, lambda t: value(t, "concertd_payments_total", method="card",
                                             result="unavailable") == 1)
    assert value(text, "concertd_payments_total", method="card", result="completed") == 1
    assert value(text, "concertd_payments_total", method="card", result="declined") == 1
    assert value(text, "concertd_payments_total", method="card", result="pending") == 2
    assert value(text, "concertd_payment_gateway_breaker_state") == 1
    assert value(text, "concertd_holds_total", event="confirmed") == 1
    # The gateway comes back: the reconciler learns the two were never
    # charged, and counts them as failed (error), not as completed.
    mockpg.faults(down=False)
    text = wait_metrics(srv, lambda t: value(t, "concertd_payments_total", method="card",
                                             result="error") == 2, timeout=15)
    assert value(text, "concertd_payments_total", method="card", result="completed") == 1


# ---- the access log ---------------------------------------------------------


def access_lines(srv):
    return [ln for ln in srv.stderr_text().splitlines() if " access: " in ln
            or '"module":"access"' in ln]


def wait_lines(srv, *ids, timeout=5.0):
    """The access lines once one for each of the request ids has been
    written (a line is written after its response is sent)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = access_lines(srv)
        if all(any(i in ln for ln in lines) for i in ids):
            return lines
        assert time.monotonic() < deadline, srv.stderr_text()[-3000:]
        time.sleep(0.05)


def test_access_log_has_one_text_line_per_request(server):
    srv = server(args=["--log-level", "info"])
    assert srv.get("/api/v1/concerts", headers={"X-Request-Id": "req-1"}).status == 200
    assert srv.get("/api/v1/users/42/balance", headers={"X-Request-Id": "req-2"}).status == 200
    assert srv.get("/no/such/thing", headers={"X-Request-Id": "req-3"}).status == 404
    r = srv.get("/api/v1/concerts/1/sessions", headers={"X-Request-Id": "req-4"})
    assert r.status == 200
    lines = wait_lines(srv, "req-1", "req-2", "req-3", "req-4")
    by_id = {re.search(r"request_id=(\S+)", ln).group(1): ln for ln in lines}
    a = by_id["req-1"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO ", a), a
    assert "method=GET route=/api/v1/concerts status=200" in a and "user_id" not in a, a
    assert int(re.search(r"latency_us=(\d+)", a).group(1)) > 0
    assert "route=/api/v1/users/{uid}/balance status=200" in by_id["req-2"]
    assert "user_id=42" in by_id["req-2"]
    assert "route=unmatched status=404" in by_id["req-3"], by_id["req-3"]
    # The token's user, from the gate; the route template, not the path.
    assert "route=/api/v1/concerts/{cid}/sessions" in by_id["req-4"]
    assert "user_id=1" in by_id["req-4"], by_id["req-4"]
    assert sum("route=/api/v1/concerts " in ln for ln in lines) == 1


def test_access_log_json_has_the_fields_as_keys(server):
    srv = server(args=["--log-level", "info", "--log-format", "json"])
    assert srv.post("/api/v1/waiting-queues", {"userId": 77}, token=None,
                    headers={"X-Request-Id": "j-1"}).status == 201
    lines = wait_lines(srv, '"j-1"')
    objs = [json.loads(ln) for ln in srv.stderr_text().splitlines() if ln.startswith("{")]
    (entry,) = [o for o in objs if o.get("request_id") == "j-1"]
    assert entry["module"] == "access" and entry["level"] == "INFO"
    assert entry["method"] == "POST" and entry["route"] == "/api/v1/waiting-queues"
    assert entry["status"] == 201 and entry["user_id"] == 77
    assert isinstance(entry["latency_us"], int) and entry["latency_us"] > 0
    assert re.match(r"^\d{4}-\d\d-\d\dT", entry["time"])
    assert lines  # every line of the log is one JSON object
    assert all(ln.startswith("{") for ln in srv.stderr_text().splitlines() if ln.strip())


def test_access_log_off_and_below_the_level_writes_nothing(server):
    off = server(args=["--log-level", "info", "--access-log", "off"])
    warn = server(args=["--log-level", "warn"])
    for srv in (off, warn):
        for _ in range(3):
            assert srv.get("/api/v1/concerts").status == 200
    on = server(args=["--log-level", "info"])
    assert on.get("/api/v1/concerts", headers={"X-Request-Id": "on-1"}).status == 200
    wait_lines(on, "on-1")  # the same requests do log when it is on
    assert access_lines(off) == [] and access_lines(warn) == []


def test_logs_never_carry_tokens_or_the_admin_key(server, mockpg):
    key = "adm1n-S3cret-key-xyz"
    srv = server(seed=["--price", "1000", "--users", "10", "--balance", "5000"],
                 args=["--log-level", "debug", "--admin-key", key, "--pg-url", mockpg.url])
    entered = srv.post("/api/v1/waiting-queues", {"userId": 9}, token=None)
    tokens = [entered.json["token"], active_token(1), active_token(2), active_token(3)]
    srv.get("/api/v1/waiting-queues", token=entered.json["token"])
    srv.delete("/api/v1/waiting-queues", token=entered.json["token"])
    srv.get("/api/v1/waiting-queues", token="not-a-real-token-abcdef")
    seats = seat_ids(srv, 1, 3)
    rid = hold(srv, 1, 1, 1, [seats[0]]).json["reservationId"]
    assert pay(srv, 1, rid, key="idem-key-1").status == 201
    rid = hold(srv, 2, 1, 1, [seats[1]]).json["reservationId"]
    assert pay(srv, 2, rid, method="card").status == 201
    srv.put("/api/v1/admin/waiting-room", {"maxActive": 50}, headers={"X-Admin-Key": key})
    srv.put("/api/v1/admin/waiting-room", {"maxActive": 50}, headers={"X-Admin-Key": "wrong"})
    srv.post("/api/token", {"userId": 3}, token=None, headers={"X-Request-Id": "last-1"})
    wait_lines(srv, "last-1")
    srv.stop()
    log = srv.stderr_text()
    assert "access:" in log and "route=/api/v1/admin/waiting-room" in log
    for secret in [key, "not-a-real-token-abcdef", "idem-key-1", *tokens]:
        assert secret not in log, f"{secret!r} is in the log"


def test_request_id_is_kept_when_sane_else_made_and_always_echoed(server):
    srv = server()
    ok = "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert srv.get("/api/v1/concerts", headers={"X-Request-Id": ok}).headers["X-Request-Id"] == ok
    made = set()
    for bad in ("a b", 'q"uote', "x" * 65, "semi;colon", "új"):
        r = srv.get("/api/v1/concerts", headers={"X-Request-Id": bad.encode().decode("latin-1")})
        rid = r.headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{16}", rid), (bad, rid)
        made.add(rid)
    assert len(made) == 5  # a new one each time
    # Errors made before any handler ran carry one too.
    for path, status in (("/nope", 404), ("/api/v1/users/abc/balance", 400)):
        r = srv.get(path)
        assert r.status == status and re.fullmatch(r"[0-9a-f]{16}", r.headers["X-Request-Id"]), r
    r = srv.post("/api/v1/users/1/balance/charge", "x" * 70000)
    assert r.status == 413 and r.headers.get("X-Request-Id"), r
