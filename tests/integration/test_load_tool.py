"""concert-load (tools/load/) against a real concertd: every scenario and
every executor with short durations, asserting on its --json output (the
requests it made, no failures, the iterations completed, the checks) and
on the database afterwards; thresholds decide the exit status; the --html
report is opened in headless Chromium and screenshotted.

The classic reference scenarios (loadtest/k6/classic_*.js) run here through
concert-load, so CI runs them on every change."""

import http.server
import json
import os
import shutil
import struct
import subprocess
import threading
import zlib
from pathlib import Path

import pytest

from booking_util import scalar
from conftest import BIN, assert_ok_json

LOAD = Path(os.environ.get("CONCERT_LOAD_BIN", BIN.parent / "concert-load"))
BALANCE = 1_000_000_000


def load(srv_url, scenario, *args, tmp_path, expect_rc=0, timeout=120):
    """Runs concert-load; returns (parsed --json output, stdout)."""
    if not LOAD.is_file():
        pytest.fail(f"concert-load not found at {LOAD}: build it or set CONCERT_LOAD_BIN",
                    pytrace=False)
    out = tmp_path / f"{scenario}.json"
    cmd = [str(LOAD), "--target", srv_url, "--scenario", scenario, "--threads", "2",
           "--json", str(out), *map(str, args)]
    cp = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout)
    assert "Sanitizer" not in cp.stderr and "runtime error" not in cp.stderr, cp.stderr[-4000:]
    assert cp.returncode == expect_rc, \
        f"{' '.join(cmd)} exited {cp.returncode}, want {expect_rc}\n{cp.stdout}\n{cp.stderr}"
    return json.loads(out.read_text()), cp.stdout


def check(d, name):
    """(passes, fails) of the check called name (0, 0 when never made)."""
    for c in d["checks"]:
        if c["name"] == name:
            return c["passes"], c["fails"]
    return 0, 0


def assert_clean(d):
    m = d["metrics"]
    assert m["http_reqs"]["count"] > 0, d["metrics"]
    assert m["http_req_failed"]["failed"] == 0, (d["routes"], m["status"])
    assert m["checks"]["fails"] == 0, d["checks"]
    assert m["status"]["5xx"] == 0 and m["status"]["none"] == 0, m["status"]
    assert m["iterations"]["count"] > 0, m["iterations"]


def db_scalar(srv, sql):
    return scalar(srv.db_path, sql)  # SQLite file or PostgreSQL database


def assert_no_double_booking(srv):
    assert db_scalar(srv, "SELECT count(*) FROM (SELECT rs.seat_id FROM reservation_seats rs "
                          "JOIN reservations r ON r.id = rs.reservation_id WHERE r.status IN "
                          "('HELD', 'CONFIRMED') GROUP BY rs.seat_id HAVING count(*) > 1) AS dup") == 0
    assert db_scalar(srv, "SELECT count(*) FROM users u WHERE balance <> (SELECT "
                          "coalesce(sum(amount), 0) FROM balance_ledger WHERE user_id = u.id)") == 0


# Load tests loop each user through the flow many times a second: the
# per-user rate limits and the live-hold cap (meant for fans) are off, as
# docs/concert-load.md tells operators to do for such runs.
LIMITS_OFF = ["--limit-enter-user", "0", "--limit-hold-user", "0", "--max-live-holds", "0"]
FAST_LINE = ["--queue-max-active", "100000", "--queue-admit-per-sec", "100000",
             "--queue-tick", "10ms", *LIMITS_OFF]


def test_queue_flood_per_vu_iterations_admits_everyone(server, tmp_path):
    srv = server(tokens=False, args=["--queue-admit-per-sec", "200", "--queue-max-active", "1000"])
    d, out = load(srv.url, "queue-flood", "--vus", 60, "--iterations", 1, "--poll", "300ms",
                  "--duration", "30s", tmp_path=tmp_path)
    assert_clean(d)
    assert d["executor"] == "per-vu-iterations"
    assert d["metrics"]["iterations"]["count"] == 60
    assert check(d, "admitted") == (60, 0)
    assert d["routes"]["enter"]["count"] == 60 and d["routes"]["leave"]["count"] == 60
    assert "http_req_duration" in out and "{ route:enter }" in out
    stats = assert_ok_json(srv.get("/api/v1/waiting-queues/stats", token=None))
    assert stats["active"] == 0 and stats["waiting"] == 0, stats  # everyone left again


def test_many_users_share_few_connections(server, tmp_path):
    srv = server(tokens=False, args=["--queue-admit-per-sec", "100000", "--queue-max-active",
                                     "100000", "--max-connections-per-ip", "0"])
    d, _ = load(srv.url, "queue-flood", "--vus", 2000, "--connections", 20, "--iterations", 1,
                "--poll", "200ms", "--duration", "60s", tmp_path=tmp_path)
    assert_clean(d)
    assert d["metrics"]["connections"]["opened"] <= 20, d["metrics"]["connections"]
    assert check(d, "admitted") == (2000, 0)
    assert d["metrics"]["iterations"]["count"] == 2000


def test_booking_constant_vus_pays_what_it_holds(server, tmp_path):
    # Enough seats that 3 s of booking cannot come near selling out: near the
    # end every hold races for the last few seats and 409s are expected.
    srv = server(seed=["--users", "40", "--balance", str(BALANCE), "--concerts", "1",
                       "--sessions-per-concert", "4", "--seats-per-session", "5000"],
                 args=FAST_LINE)
    d, _ = load(srv.url, "booking", "--vus", 40, "--duration", "3s", "--poll", "50ms",
                tmp_path=tmp_path)
    assert_clean(d)
    assert d["executor"] == "constant-vus" and d["metrics"]["vus_max"] == 40
    paid, _ = check(d, "paid")
    assert paid > 40  # users entered the line again after paying and booked more
    assert d["routes"]["pay"]["count"] == paid
    assert db_scalar(srv, "SELECT count(*) FROM payments WHERE status = 'COMPLETED'") == paid
    assert_no_double_booking(srv)


def test_full_flow_ramping_vus_follows_the_stages(server, tmp_path):
    srv = server(seed=["--users", "30", "--balance", str(BALANCE), "--seats-per-session", "500"],
                 args=FAST_LINE)
    d, _ = load(srv.url, "full-flow", "--stages", "1s:10,2s:30,1s:0", "--poll", "50ms",
                tmp_path=tmp_path)
    assert_clean(d)
    assert d["executor"] == "ramping-vus" and [s["target"] for s in d["stages"]] == [10, 30, 0]
    assert 20 <= d["metrics"]["vus_max"] <= 30, d["metrics"]["vus_max"]
    for step in ("enter", "concerts", "sessions", "seats", "hold", "pay"):
        assert d["routes"][step]["count"] > 0, step
    series = d["series"]
    assert len(series) >= 4 and sum(s["reqs"] for s in series) == d["metrics"]["http_reqs"]["count"]
    assert max(s["vus"] for s in series[1:3]) > series[0]["vus"]  # it ramped up
    assert check(d, "paid")[0] == db_scalar(
        srv, "SELECT count(*) FROM payments WHERE status = 'COMPLETED'")
    assert_no_double_booking(srv)


def test_balance_constant_arrival_rate(server, tmp_path):
    srv = server(tokens=False)
    d, _ = load(srv.url, "balance", "--rate", "200/s", "--vus", 50, "--duration", "2s",
                "--users", 500, tmp_path=tmp_path)
    assert_clean(d)
    it = d["metrics"]["iterations"]
    assert d["executor"] == "constant-arrival-rate"
    assert 340 <= it["count"] <= 420 and it["dropped"] == 0, it
    charged, _ = check(d, "charged")
    total = db_scalar(srv, "SELECT coalesce(sum(balance), 0) FROM users WHERE id > 2000000")
    assert total == 1000 * charged  # every charge answered 200 is in the database


def test_classic_full_flow_reference_scenario(server, tmp_path):
    """loadtest/k6/classic_flow.js through concert-load."""
    srv = server(seed=["--users", "30", "--balance", str(BALANCE), "--seats-per-session", "2000"],
                 args=["--queue-max-active", "20", "--queue-admit-per-sec", "1000",
                       "--queue-tick", "10ms", *LIMITS_OFF])
    d, out = load(srv.url, "classic-full-flow", "--vus", 30, "--duration", "3s", "--poll", "50ms",
                  "--threshold", "p95<500ms", "--threshold", "failed<=0", tmp_path=tmp_path)
    assert_clean(d)
    assert d["thresholds_ok"] is True and all(t["ok"] for t in d["thresholds"])
    for step in ("token", "status", "concerts", "schedules", "seats", "reserve", "pay"):
        assert d["routes"][step]["count"] > 0, step
    assert check(d, "paid")[0] > 0
    assert "✓ p95<500ms" in out
    assert_no_double_booking(srv)


def test_classic_balance_reference_scenario(server, tmp_path):
    """loadtest/k6/classic_balance.js through concert-load."""
    srv = server(tokens=False)
    d, _ = load(srv.url, "classic-balance", "--vus", 20, "--duration", "2s",
                "--threshold", "p95<500ms", tmp_path=tmp_path)
    assert_clean(d)
    assert d["routes"]["balance"]["count"] >= d["routes"]["charge"]["count"] > 0
    assert check(d, "charged")[0] == d["routes"]["charge"]["count"]


def test_failed_threshold_gives_a_nonzero_exit(server, tmp_path):
    srv = server(tokens=False)
    d, out = load(srv.url, "get", "--path", "/api/v1/concerts", "--vus", 4, "--duration", "1s",
                  "--threshold", "p99<1us", "--threshold", "rps>1", tmp_path=tmp_path,
                  expect_rc=1)
    assert d["thresholds_ok"] is False
    assert [t["ok"] for t in d["thresholds"]] == [False, True]
    assert "✗ p99<1us" in out


def test_errors_count_as_failed_requests(server, tmp_path):
    srv = server(tokens=False)
    d, _ = load(srv.url, "get", "--path", "/no/such/route", "--vus", 2, "--duration", "1s",
                "--threshold", "failed<1%", tmp_path=tmp_path, expect_rc=1)
    m = d["metrics"]
    assert m["http_req_failed"]["failed"] == m["http_reqs"]["count"] > 0
    assert m["status"]["4xx"] == m["http_reqs"]["count"]


def test_breakpoint_stops_where_it_breaks(server, tmp_path):
    srv = server(tokens=False)
    d, out = load(srv.url, "get", "--path", "/api/v1/concerts", "--test", "breakpoint",
                  "--vus", 200, "--duration", "20s", "--threshold", "p95<1us", tmp_path=tmp_path)
    bp = d["breakpoint"]
    assert bp["broke"] is True and bp["vus"] > 0 and "p95<1us" in bp["why"], bp
    assert d["duration_s"] < 10, d["duration_s"]  # stopped at the break, not after 20 s
    assert "breakpoint: broke at" in out


def test_presets_shape_the_stages(server, tmp_path):
    srv = server(tokens=False)
    want = {"load": [10, 10, 0], "stress": [10, 10, 20, 20, 0], "spike": [1, 1, 10, 10, 1, 1, 0]}
    for test, targets in want.items():
        d, _ = load(srv.url, "get", "--path", "/api/v1/concerts", "--test", test, "--vus", 10,
                    "--duration", "2s", tmp_path=tmp_path)
        assert [s["target"] for s in d["stages"]] == targets, (test, d["stages"])
        assert abs(sum(s["duration_s"] for s in d["stages"]) - 2.0) < 0.01, d["stages"]
        assert d["metrics"]["vus_max"] >= 2 and d["metrics"]["http_req_failed"]["failed"] == 0


def test_bad_options_are_refused_with_a_message(tmp_path):
    for args, word in ((["--scenario", "nope"], "--scenario"),
                       (["--scenario", "get", "--path", "/", "--rate", "x"], "--rate"),
                       (["--scenario", "booking", "--threshold", "p95"], "--threshold"),
                       (["--scenario", "booking", "--stages", "1s"], "--stages")):
        cp = subprocess.run([str(LOAD), "--target", "http://127.0.0.1:9", *args],
                            capture_output=True, text=True, timeout=10)
        assert cp.returncode == 2 and word in cp.stderr, (args, cp.stderr)


def test_connections_spread_over_source_addresses(tmp_path):
    seen = set()

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            seen.add(self.client_address[0])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        d, _ = load(f"http://127.0.0.1:{httpd.server_address[1]}", "get", "--path", "/x",
                    "--vus", 6, "--duration", "1s", "--source", "127.0.0.1-127.0.0.3",
                    tmp_path=tmp_path)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert_clean(d)
    assert seen == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}, seen


# ---------------------------------------------------------------------------
# The HTML report in a real browser


def chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("chromium not installed (scripts/deps installs it)", pytrace=False)
    return exe


def png_pixels(data):
    """(width, height, set of distinct RGB colours) of an 8-bit RGB/RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and ctype in (2, 6), (depth, ctype)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    raw, stride = zlib.decompress(idat), w * bpp
    prev, colours, i = bytearray(stride), set(), 0
    for _ in range(h):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        for x in range(0, stride, bpp):
            colours.add(bytes(line[x:x + 3]))
        prev = line
    return w, h, colours


def test_html_report_shows_its_charts_in_chromium(server, tmp_path):
    srv = server(tokens=False)
    html = tmp_path / "report.html"
    charts = tmp_path / "charts"
    charts.mkdir()
    load(srv.url, "balance", "--stages", "1s:5,1s:20,1s:5", "--html", html, "--svg", charts,
         tmp_path=tmp_path)
    for chart in ("throughput", "latency", "errors", "vus"):  # standalone copies
        svg = (charts / f"{chart}.svg").read_text()
        assert svg.startswith("<?xml") and "<polyline" in svg and svg.rstrip().endswith("</svg>")
    text = html.read_text()
    for chart in ("throughput", "latency", "errors", "vus"):
        assert f'<svg id="{chart}"' in text, chart
    assert "src=" not in text and "http://www.w3.org/2000/svg" in text  # nothing to fetch
    assert "<table id=\"summary\">" in text and "<td>charge</td>" in text

    exe = chromium()
    common = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1000,1600"]
    dom = subprocess.run([*common, "--dump-dom", html.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-3000:]
    assert dom.stdout.count("<polyline") >= 9, "the browser's DOM lacks the chart lines"
    assert dom.stdout.count("<svg") == 4
    png = tmp_path / "report.png"
    shot = subprocess.run([*common, f"--screenshot={png}", html.as_uri()], capture_output=True,
                          text=True, timeout=120)
    assert shot.returncode == 0 and png.is_file(), shot.stderr[-3000:]
    w, h, colours = png_pixels(png.read_bytes())
    assert (w, h) == (1000, 1600)
    assert len(colours) > 200, f"only {len(colours)} colours: the page did not render its charts"
    for rgb in ((0x15, 0x65, 0xc0), (0xc6, 0x28, 0x28), (0x00, 0x83, 0x8f)):  # three line colours
        assert bytes(rgb) in colours, f"no pixel of #{bytes(rgb).hex()}"
