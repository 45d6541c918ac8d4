"""GET /metrics: the Prometheus text format, accepted by promtool, with
series that follow what the server did."""

import re
import shutil
import subprocess
import time

import pytest

from conftest import QUEUE_MODE, active_token

PROMTOOL = shutil.which("promtool")


def scrape(srv):
    r = srv.get("/metrics", token=None)
    assert r.status == 200, r
    ct = r.headers.get("Content-Type", "")
    assert ct.startswith("text/plain") and "version=0.0.4" in ct, ct
    return r.raw.decode()


def value(text, name, **labels):
    """The sample of name whose labels include the given ones; None if absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, f"not a sample line: {line!r}"
        if m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return None


def test_promtool_accepts_the_exposition(shared_server):
    shared_server.get("/api/v1/concerts")
    text = scrape(shared_server)
    assert PROMTOOL, "promtool is missing: scripts/deps installs Debian's prometheus package"
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


def test_request_counters_follow_the_traffic(server):
    srv = server()
    before = scrape(srv)
    base = value(before, "concertd_http_requests_total", route="/api/v1/concerts", method="GET",
                 status="200") or 0
    for _ in range(5):
        assert srv.get("/api/v1/concerts").status == 200
    assert srv.get("/no/such/route").status == 404
    assert srv.get("/api/v1/concerts/1/sessions", token=None).status == 401
    # A request is counted once its answer has been sent, which can be just
    # after the client has it: give the last ones a moment to land.
    deadline = time.monotonic() + 3
    while True:
        text = scrape(srv)
        if value(text, "concertd_http_requests_total", route="/api/v1/concerts/{cid}/sessions",
                 method="GET", status="401") == 1 and value(
                     text, "concertd_http_requests_total", route="/api/v1/concerts",
                     method="GET", status="200") == base + 5:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.05)
    assert value(text, "concertd_http_requests_total", route="/api/v1/concerts", method="GET",
                 status="200") == base + 5
    assert value(text, "concertd_http_requests_total", route="unmatched", method="GET",
                 status="404") >= 1
    assert value(text, "concertd_http_requests_total", route="/api/v1/concerts/{cid}/sessions",
                 method="GET", status="401") == 1
    n = value(text, "concertd_http_request_duration_seconds_count", route="/api/v1/concerts")
    inf = value(text, "concertd_http_request_duration_seconds_bucket", route="/api/v1/concerts",
                le="+Inf")
    assert n == inf == base + 5
    assert value(text, "concertd_http_request_duration_seconds_sum", route="/api/v1/concerts") > 0
    # Raw paths never become labels: only route templates do.
    assert "/api/v1/concerts/1/sessions" not in text


def test_waiting_room_store_and_process_series(server):
    srv = server(tokens=False, args=["--queue-max-active", "2"])
    for u in range(1, 6):
        assert srv.post("/api/v1/waiting-queues", {"userId": u}, token=None).status == 201
    assert srv.post("/api/v1/users/1/balance/charge", {"amount": 7}).status == 200
    deadline = time.monotonic() + 5
    while True:
        text = scrape(srv)
        if value(text, "concertd_waiting_room_active") == 2:
            break
        assert time.monotonic() < deadline, "admissions did not show in /metrics"
        time.sleep(0.05)
    stats = srv.get("/api/v1/waiting-queues/stats", token=None).json
    assert value(text, "concertd_waiting_room_waiting") == stats["waiting"] == 3
    assert value(text, "concertd_waiting_room_max_active") == 2
    assert value(text, "concertd_waiting_room_admissions_total") == 2
    assert value(text, "concertd_store_commits_total") >= 1
    # 5 enters + 1 charge; with the Redis queue the enters go to Redis, not the store
    assert value(text, "concertd_store_commit_jobs_total") >= (6 if QUEUE_MODE == "local" else 1)
    assert value(text, "concertd_process_resident_memory_bytes") > 1_000_000
    assert value(text, "concertd_process_open_fds") > 3
    assert value(text, "concertd_build_info", version=re.search(
        r'version="([^"]+)"', text).group(1)) == 1
    assert value(text, "concertd_http_requests_in_flight") >= 1  # the scrape itself


def test_metrics_carry_no_tokens_or_keys(server):
    srv = server(args=["--admin-key", "sekret-admin-key"])
    srv.get("/api/v1/waiting-queues", token=active_token(1))
    srv.put("/api/v1/admin/waiting-room", {"maxActive": 9},
            headers={"X-Admin-Key": "sekret-admin-key"})
    text = scrape(srv)
    assert active_token(1) not in text and "sekret-admin-key" not in text


def pay_once(srv):
    r = srv.post("/api/v1/concerts/1/sessions/1/reservations", {"userId": 1, "seatIds": [1]})
    assert r.status == 201, r
    p = srv.post("/api/v1/payments", {"userId": 1, "reservationId": r.json["reservationId"]})
    assert p.status == 201, p


def test_outbox_lag_counts_unpublished_events(server):
    srv = server(seed=["--users", "10", "--balance", "1000000"])  # no --events: no relay
    assert value(scrape(srv), "concertd_outbox_unpublished") == 0
    pay_once(srv)
    time.sleep(1.2)
    text = scrape(srv)
    assert value(text, "concertd_outbox_unpublished") == 1
    assert value(text, "concertd_outbox_lag_seconds") >= 1.0


def test_outbox_lag_drops_to_zero_once_the_relay_publishes(server, tmp_path):
    srv = server(seed=["--users", "10", "--balance", "1000000"],
                 args=["--events", f"log:{tmp_path}/events.jsonl"])
    pay_once(srv)
    deadline = time.monotonic() + 5
    while True:
        text = scrape(srv)
        if value(text, "concertd_outbox_unpublished") == 0:
            break
        assert time.monotonic() < deadline, "the relay did not publish within 5 s"
        time.sleep(0.05)
    assert value(text, "concertd_outbox_lag_seconds") == 0
    assert (tmp_path / "events.jsonl").read_text().count("payment.completed") == 1
