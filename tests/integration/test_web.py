"""The fans' pages (web/, docs/web.md): how concertd serves them, and the
pages themselves driven in headless chromium.

Static serving: each page with its Content-Type, a strong ETag answered with
304, Cache-Control, HEAD without a body; traversal in every spelling ('..',
encoded dots and slashes, backslashes, NUL, '//', absolute form) refused
with a JSON 400 and never a file. --web-root none / unreadable.

Browser: tests/browser/fan.mjs (playwright-core driving Debian's chromium)
walks a fan from the waiting room to a confirmed ticket on a phone-sized
screen, races two fans for one seat, and lets a token expire. Screenshots
land in tests/browser/artifacts/<scenario>/ and are checked to exist. A
missing chromium or node is a failure (run scripts/deps), not a skip."""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, assert_error, assert_ok_json, connect, run_cli

WEB = REPO_ROOT / "web"
BROWSER = REPO_ROOT / "tests" / "browser"
ARTIFACTS = BROWSER / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

PAGES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/booking.html": ("booking.html", "text/html; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    "/common.js": ("common.js", "text/javascript; charset=utf-8"),
    "/waiting.js": ("waiting.js", "text/javascript; charset=utf-8"),
    "/booking.js": ("booking.js", "text/javascript; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}


def raw_request(srv, method, target, extra=b""):
    """One request with the target sent byte for byte (no client-side
    normalisation); returns (status, headers dict, body bytes) read to EOF."""
    with connect(srv.port, timeout=5.0) as s:
        s.sendall(method.encode() + b" " + target + b" HTTP/1.1\r\nHost: t\r\n" + extra +
                  b"Connection: close\r\n\r\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


# ---------------------------------------------------------------------------
# Static serving


def test_every_page_is_served_with_its_type_etag_and_cache_headers(shared_server):
    for path, (name, ctype) in PAGES.items():
        r = shared_server.get(path, token=None)
        assert r.status == 200, f"{path}: {r!r}"
        assert r.headers["Content-Type"] == ctype, path
        if name != "booking.html":  # the one page with a filled-in placeholder
            assert r.raw == (WEB / name).read_bytes(), f"{path} is not web/{name} byte for byte"
        etag = r.headers["ETag"]
        assert etag.startswith('"') and etag.endswith('"') and len(etag) > 10, etag
        assert r.headers["Cache-Control"] == "no-cache", path
        assert r.headers["X-Content-Type-Options"] == "nosniff", path
        assert "default-src 'self'" in r.headers["Content-Security-Policy"], path


def test_a_known_etag_gets_304_without_a_body(shared_server):
    r = shared_server.get("/app.css", token=None)
    etag = r.headers["ETag"]
    for inm in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        again = shared_server.get("/app.css", headers={"If-None-Match": inm}, token=None)
        assert again.status == 304, f"If-None-Match {inm}: {again!r}"
        assert again.raw == b"" and again.headers["ETag"] == etag
    other = shared_server.get("/app.css", headers={"If-None-Match": '"other"'}, token=None)
    assert other.status == 200 and other.raw == r.raw


def test_head_sends_the_headers_of_get_and_no_body(shared_server):
    get = shared_server.get("/booking.js", token=None)
    status, headers, body = raw_request(shared_server, "HEAD", b"/booking.js")
    assert status == 200 and body == b""
    assert int(headers["content-length"]) == len(get.raw)
    assert headers["etag"] == get.headers["ETag"]
    assert headers["content-type"] == "text/javascript; charset=utf-8"


def test_pages_take_only_get_and_head(shared_server):
    r = shared_server.post("/", body={"x": 1}, token=None)
    assert_error(r, 405, "METHOD_NOT_ALLOWED")
    assert r.headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("target", [
    b"/../etc/passwd",
    b"/../../../../etc/passwd",
    b"/%2e%2e/etc/passwd",
    b"/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    b"/..%2f..%2fetc/passwd",
    b"/.%2e/web/index.html",
    b"/web/../index.html",
    b"/app.css/..",
    b"/./index.html",
    b"/index.html%00.js",
    b"/%00",
    b"/%2500",
    b"//etc/passwd",
    b"/%2F%2Fetc/passwd",
    b"/..\\..\\etc\\passwd",
    b"/%5c..%5cetc%5cpasswd",
    b"/api/v1/../v1/concerts",
    b"/api/v1/concerts%00",
    b"http://127.0.0.1/etc/passwd",
    b"etc/passwd",
])
def test_traversal_in_any_spelling_is_refused_with_json(shared_server, target):
    status, headers, body = raw_request(shared_server, "GET", target)
    assert status == 400, f"{target!r}: {status} {body[:200]!r}"
    assert headers["content-type"] == "application/json; charset=utf-8"
    err = json.loads(body)["error"]
    assert err["code"] == "INVALID_REQUEST" and err["message"], err
    assert b"root:" not in body


@pytest.mark.parametrize("path", ["/etc/passwd", "/web/index.html", "/index.htm", "/INDEX.HTML",
                                  "/index.html/", "/booking", "/node_modules/x.js"])
def test_names_outside_the_fixed_set_are_404(shared_server, path):
    assert_error(shared_server.get(path, token=None), 404, "NOT_FOUND")


def test_booking_page_knows_the_hold_limit(server):
    srv = server(args=["--max-seats-per-hold", "3"])
    r = srv.get("/booking.html", token=None)
    assert r.status == 200
    assert b'data-max-seats="3"' in r.raw and b"{{" not in r.raw


def test_web_root_none_serves_no_pages_but_the_api(server):
    srv = server(args=["--web-root", "none"])
    assert_error(srv.get("/", token=None), 404, "NOT_FOUND", ["--web-root"])
    assert_ok_json(srv.get("/api/v1/concerts", token=None))


def test_web_root_from_another_directory(server, tmp_path):
    root = tmp_path / "site"
    shutil.copytree(WEB, root)
    (root / "app.css").write_text("body { color: #123456 }\n")
    srv = server(args=["--web-root", str(root)])
    r = srv.get("/app.css", token=None)
    assert r.status == 200 and r.raw == b"body { color: #123456 }\n"


def test_unreadable_web_root_stops_start_up(tmp_path):
    run_cli("migrate", "--db", f"sqlite:{tmp_path / 'c.db'}", check=True)
    cp = run_cli("serve", "--db", f"sqlite:{tmp_path / 'c.db'}", "--listen", "127.0.0.1:0",
                 "--web-root", str(tmp_path / "missing"), timeout=15)
    assert cp.returncode != 0
    assert "--web-root" in cp.stderr and "index.html" in cp.stderr, cp.stderr


def test_pages_talk_only_to_the_v1_api():
    calls = []
    for js in sorted(WEB.glob("*.js")):
        calls += [(js.name, m.group(1)) for m in re.finditer(r"['`](/api/[^'`]*)", js.read_text())]
    assert len(calls) >= 8, calls
    wrong = [c for c in calls if not c[1].startswith("/api/v1/")]
    assert not wrong, f"calls outside the v1 API: {wrong}"


# ---------------------------------------------------------------------------
# In a real browser


@pytest.fixture(scope="module")
def node_env():
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        pytest.fail("node is not installed: run scripts/deps", pytrace=False)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/deps (Debian's chromium)", pytrace=False)
    cp = subprocess.run([str(BROWSER / "setup")], capture_output=True, text=True, timeout=300)
    if cp.returncode != 0:
        pytest.fail(f"tests/browser/setup failed:\n{cp.stderr[-4000:]}", pytrace=False)
    return node


def run_fan(node, scenario, srv):
    """Runs fan.mjs SCENARIO against srv; returns its JSON result after
    checking every screenshot it names exists and is a PNG."""
    out = ARTIFACTS / scenario
    shutil.rmtree(out, ignore_errors=True)
    cp = subprocess.run([node, str(BROWSER / "fan.mjs"), scenario, srv.url, str(out)],
                        capture_output=True, text=True, timeout=240, cwd=BROWSER,
                        env={**os.environ, "CHROMIUM": CHROMIUM})
    assert cp.returncode == 0, (f"fan.mjs {scenario} failed (screenshots in {out}):\n"
                                f"{cp.stderr[-6000:]}\n{cp.stdout[-2000:]}")
    result = json.loads(cp.stdout.strip().splitlines()[-1])
    assert result["ok"] is True and result["scenario"] == scenario
    for shot in result["screenshots"]:
        data = Path(shot).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, shot
    return result


def enter(srv, user):
    """An ACTIVATED token for user (the server has room)."""
    body = assert_ok_json(srv.post("/api/v1/waiting-queues", body={"userId": user}, token=None), 201)
    for _ in range(100):
        r = assert_ok_json(srv.get("/api/v1/waiting-queues", token=body["token"]))
        if r["status"] == "ACTIVATED":
            return body["token"]
        time.sleep(0.05)
    pytest.fail(f"user {user} was not admitted")


def available_numbers(srv, token, cid, sid):
    seats = assert_ok_json(srv.get(f"/api/v1/concerts/{cid}/sessions/{sid}/seats?limit=1000",
                                   token=token))["availableSeats"]
    return {s["seatNumber"] for s in seats}


@pytest.mark.slow
def test_browser_fan_waits_then_books_and_pays_on_a_phone(server, node_env):
    srv = server(args=["--queue-max-active", "1"], tokens=False)
    result = run_fan(node_env, "journey", srv)
    names = {Path(s).name for s in result["screenshots"]}
    assert names == {"waiting-room.png", "seat-map-hold.png", "confirmation.png"}
    # What the page showed is what the server holds: the balance charged in
    # the page went exactly into the payment, the seats are sold.
    bal = assert_ok_json(srv.get(f"/api/v1/users/{result['userId']}/balance", token=None))
    assert bal["balance"] == 0, bal
    token = enter(srv, 8)  # the fan's payment freed the one active slot
    sessions = assert_ok_json(srv.get("/api/v1/concerts/1/sessions", token=token))["sessions"]
    booked = [s for s in sessions if s["availableSeats"] == s["totalSeats"] - 2]
    assert len(booked) == 1, sessions
    left = available_numbers(srv, token, 1, booked[0]["sessionId"])
    assert not set(result["seats"]) & left, (result["seats"], left)


@pytest.mark.slow
def test_browser_two_fans_race_for_one_seat(server, node_env):
    srv = server(tokens=False)
    result = run_fan(node_env, "race", srv)
    token = enter(srv, 40)
    sid = assert_ok_json(srv.get("/api/v1/concerts/1/sessions", token=token))["sessions"][0]["sessionId"]
    left = available_numbers(srv, token, 1, sid)
    assert result["contested"] not in left and result["loserHeld"] not in left, left
    assert len(left) == 48, "exactly the two held seats are gone"


@pytest.mark.slow
def test_browser_expired_token_is_explained_and_the_fan_rejoins(server, node_env):
    srv = server(args=["--queue-active-ttl", "3s"], tokens=False)
    run_fan(node_env, "expired", srv)
