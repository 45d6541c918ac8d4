"""The command line: --help/--version, option validation (flags and CONCERT_*
environment variables), seed, migrate and import (DESIGN.md 5)."""

import json
import re
import subprocess
import time

import pytest

from conftest import BIN, assert_ok_json, free_port, http_request, run_cli

SERVE_OPTIONS = ["--listen", "--db", "--workers", "--max-body", "--max-header-bytes",
                 "--connection-timeout", "--max-connections", "--max-connections-per-ip",
                 "--log-level", "--trusted-proxies"]
SEED_OPTIONS = ["--concerts", "--sessions-per-concert", "--seats-per-session", "--price",
                "--users", "--balance"]


def env_name(opt):
    return "CONCERT_" + opt.lstrip("-").replace("-", "_").upper()


# --- help and version -------------------------------------------------------


def test_help_lists_every_option_with_its_env_var():
    cp = run_cli("--help")
    assert cp.returncode == 0, cp
    text = cp.stdout + cp.stderr
    for sub in ("serve", "seed", "import", "migrate"):
        assert sub in text, f"--help does not mention subcommand {sub}"
    for opt in SERVE_OPTIONS:
        assert re.search(re.escape(opt) + r"\b", text), f"--help lacks {opt}"
        assert env_name(opt) in text, f"--help lacks {env_name(opt)} for {opt}"
    for opt in SEED_OPTIONS:
        assert re.search(re.escape(opt) + r"\b", text), f"--help lacks {opt}"


def test_help_goes_to_stdout():
    cp = run_cli("--help")
    assert "--max-body" in cp.stdout, "--help should print to stdout so it can be piped"


def test_version():
    cp = run_cli("--version")
    assert cp.returncode == 0, cp
    out = (cp.stdout + cp.stderr).strip()
    assert re.search(r"\d+\.\d+", out), f"--version printed {out!r}"
    assert len(out.splitlines()) <= 3, out


# --- bad values -------------------------------------------------------------

BAD_SERVE_ARGS = [
    (["--workers", "abc"], "--workers"),
    (["--workers", "-1"], "--workers"),
    (["--workers", ""], "--workers"),
    (["--workers", "99999999999999999999999"], "--workers"),
    (["--workers=1.5"], "--workers"),
    (["--connection-timeout", "5x"], "--connection-timeout"),
    (["--connection-timeout", "-5s"], "--connection-timeout"),
    (["--connection-timeout", "s"], "--connection-timeout"),
    (["--max-body", "abc"], "--max-body"),
    (["--max-body", "-1"], "--max-body"),
    (["--max-header-bytes", "lots"], "--max-header-bytes"),
    (["--max-connections", "many"], "--max-connections"),
    (["--max-connections-per-ip", "x"], "--max-connections-per-ip"),
    (["--log-level", "shout"], "--log-level"),
    (["--listen", "not-an-address"], "--listen"),
    (["--listen", "127.0.0.1:99999"], "--listen"),
    (["--bogus-option", "1"], "--bogus-option"),
    (["--price", "5"], "--price"),            # an option of seed, not serve
    (["--concerts", "2"], "--concerts"),
    (["--workers"], "--workers"),             # missing value
    (["--trusted-proxies", "proxy.example"], "--trusted-proxies"),
    (["--trusted-proxies", "10.0.0.0/33"], "--trusted-proxies"),
    (["--trusted-proxies", "127.0.0.1,"], "--trusted-proxies"),
]


@pytest.mark.parametrize("args,name", BAD_SERVE_ARGS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_bad_serve_option_stops_startup_naming_it(tmp_path, args, name):
    port = free_port()
    cp = run_cli("serve", "--listen", f"127.0.0.1:{port}", "--db", f"sqlite:{tmp_path}/x.db",
                 *args, timeout=10)
    assert cp.returncode != 0, f"serve {args} started (exit {cp.returncode}): {cp.stderr}"
    assert cp.returncode > 0, f"serve {args} crashed with signal {-cp.returncode}"
    assert name in cp.stderr, f"stderr does not name {name}: {cp.stderr!r}"


BAD_ENV = [
    ("CONCERT_WORKERS", "abc"),
    ("CONCERT_MAX_BODY", "big"),
    ("CONCERT_CONNECTION_TIMEOUT", "5x"),
    ("CONCERT_MAX_HEADER_BYTES", "-3"),
    ("CONCERT_MAX_CONNECTIONS_PER_IP", "1.5"),
    ("CONCERT_LOG_LEVEL", "loud"),
    ("CONCERT_TRUSTED_PROXIES", "::1/200"),
]


@pytest.mark.parametrize("var,value", BAD_ENV)
def test_bad_env_value_stops_startup_naming_it(tmp_path, var, value):
    port = free_port()
    cp = run_cli("serve", "--listen", f"127.0.0.1:{port}", "--db", f"sqlite:{tmp_path}/x.db",
                 env={var: value}, timeout=10)
    assert cp.returncode > 0, f"{var}={value}: exit {cp.returncode}, stderr {cp.stderr!r}"
    flag = "--" + var[len("CONCERT_"):].lower().replace("_", "-")
    assert var in cp.stderr or flag in cp.stderr, \
        f"stderr names neither {var} nor {flag}: {cp.stderr!r}"


@pytest.mark.parametrize("args,name", [
    (["--concerts", "abc"], "--concerts"),
    (["--seats-per-session", "-1"], "--seats-per-session"),
    (["--price", "1.5"], "--price"),
    (["--workers", "2"], "--workers"),  # an option of serve, not seed
])
def test_bad_seed_option_fails_naming_it(tmp_path, args, name):
    cp = run_cli("seed", "--db", f"sqlite:{tmp_path}/x.db", *args)
    assert cp.returncode > 0, cp
    assert name in cp.stderr, cp.stderr


def test_unknown_subcommand_fails(tmp_path):
    cp = run_cli("frobnicate", "--db", f"sqlite:{tmp_path}/x.db", timeout=10)
    assert cp.returncode > 0, cp
    assert cp.stderr.strip(), "no message for an unknown subcommand"


def test_unusable_database_stops_startup(tmp_path):
    port = free_port()
    cp = run_cli("serve", "--listen", f"127.0.0.1:{port}",
                 "--db", f"sqlite:{tmp_path}/no/such/dir/x.db", timeout=10)
    assert cp.returncode > 0, cp
    assert cp.stderr.strip(), cp


def test_port_in_use_stops_startup(server):
    # A second instance on a taken port must fail loudly, not share the port
    # (SO_REUSEPORT) and silently take half of the first one's connections.
    srv = server()
    try:
        cp = run_cli("serve", "--listen", f"127.0.0.1:{srv.port}", "--db", srv.db_url, timeout=5)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"a second concertd started on the busy port {srv.port} and kept running: "
                    f"{(e.stderr or b'').decode(errors='replace')[-500:]}")
    assert cp.returncode > 0, cp
    assert cp.stderr.strip(), cp
    srv.assert_live()


@pytest.mark.parametrize("value", ["30", "30s", "1m", "1h"])
def test_duration_forms_are_accepted(server, value):
    server(args=["--connection-timeout", value]).assert_live()


@pytest.mark.parametrize("value", ["65536", "64KiB", "1MiB"])
def test_size_forms_are_accepted(server, value):
    server(args=["--max-body", value, "--max-header-bytes", "8KiB"]).assert_live()


def test_no_subcommand_means_serve(tmp_path):
    db = tmp_path / "d.db"
    run_cli("seed", "--db", f"sqlite:{db}", check=True)
    port = free_port()
    err = open(tmp_path / "stderr", "wb")
    p = subprocess.Popen([str(BIN), "--listen", f"127.0.0.1:{port}", "--db", f"sqlite:{db}"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert p.poll() is None, f"exited {p.returncode}: {(tmp_path / 'stderr').read_text()}"
            try:
                r = http_request("127.0.0.1", port, "GET", "/api/v1/concerts", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "plain `concertd` did not serve"
                time.sleep(0.05)
        assert len(assert_ok_json(r)["concerts"]) == 3
    finally:
        p.terminate()
        assert p.wait(10) == 0
        err.close()


# --- seed -------------------------------------------------------------------


def test_seed_counts_grades_and_dates(server):
    srv = server(seed=["--concerts", "2", "--sessions-per-concert", "3",
                       "--seats-per-session", "10", "--price", "5000"])
    cs = assert_ok_json(srv.get("/api/v1/concerts"))["concerts"]
    assert [c["title"] for c in cs] == ["Concert 1", "Concert 2"]
    for c in cs:
        ss = assert_ok_json(srv.get(f"/api/v1/concerts/{c['concertId']}/sessions"))["sessions"]
        assert [s["startsAt"] for s in ss] == \
            ["2027-01-01T10:00:00Z", "2027-01-02T10:00:00Z", "2027-01-03T10:00:00Z"]
        for s in ss:
            assert s["totalSeats"] == 10 and s["availableSeats"] == 10, s
            seats = assert_ok_json(srv.get(
                f"/api/v1/concerts/{c['concertId']}/sessions/{s['sessionId']}/seats"))["availableSeats"]
            assert [x["seatNumber"] for x in seats] == list(range(1, 11))
            assert {(x["grade"], x["price"]) for x in seats} == {("R", 5000)}


def test_seed_demo_grades_scale_with_seat_count(server):
    srv = server(seed=["--concerts", "1", "--sessions-per-concert", "1", "--seats-per-session", "20"])
    sid = assert_ok_json(srv.get("/api/v1/concerts/1/sessions"))["sessions"][0]["sessionId"]
    seats = assert_ok_json(srv.get(f"/api/v1/concerts/1/sessions/{sid}/seats"))["availableSeats"]
    got = [(x["seatNumber"], x["grade"], x["price"]) for x in seats]
    want = [(n, *(("VIP", 150000) if n <= 4 else ("R", 120000) if n <= 10 else ("S", 90000)))
            for n in range(1, 21)]
    assert got == want


def test_seed_twice_adds_data(server, tmp_path):
    db = tmp_path / "twice.db"
    run_cli("seed", "--db", f"sqlite:{db}", check=True)
    srv = server(db_path=db, seed=["--concerts", "2"])
    cs = assert_ok_json(srv.get("/api/v1/concerts"))["concerts"]
    assert [c["concertId"] for c in cs] == [1, 2, 3, 4, 5]


# --- migrate ----------------------------------------------------------------


def test_migrate_is_idempotent_and_keeps_data(server, tmp_path):
    db = tmp_path / "m.db"
    for _ in range(2):
        cp = run_cli("migrate", "--db", f"sqlite:{db}")
        assert cp.returncode == 0, cp
    run_cli("seed", "--db", f"sqlite:{db}", "--concerts", "1", check=True)
    cp = run_cli("migrate", "--db", f"sqlite:{db}")
    assert cp.returncode == 0, cp
    srv = server(db_path=db, do_seed=False)
    assert [c["title"] for c in assert_ok_json(srv.get("/api/v1/concerts"))["concerts"]] == ["Concert 1"]


# --- import -----------------------------------------------------------------

GOOD_EVENT = {
    "title": "IU HEREH World Tour", "venue": "KSPO Dome",
    "sessions": ["2026-12-25T18:00:00+09:00", "2026-12-24T19:00:00+09:00"],
    "blocks": [{"grade": "VIP", "price": 165000, "from": 1, "to": 100},
               {"grade": "R", "price": 143000, "from": 101, "to": 400}],
}


def write_event(tmp_path, obj, name="event.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def test_import_good_event(server, tmp_path):
    db = tmp_path / "imp.db"
    run_cli("seed", "--db", f"sqlite:{db}", check=True)  # concerts 1..3 exist
    cp = run_cli("import", "--db", f"sqlite:{db}", write_event(tmp_path, GOOD_EVENT))
    assert cp.returncode == 0, cp
    assert re.search(r"\b4\b", cp.stdout + cp.stderr), f"output does not name concert id 4: {cp!r}"
    srv = server(db_path=db, do_seed=False)
    cs = assert_ok_json(srv.get("/api/v1/concerts"))["concerts"]
    assert cs[-1] == {"concertId": 4, "title": "IU HEREH World Tour", "venue": "KSPO Dome"}
    ss = assert_ok_json(srv.get("/api/v1/concerts/4/sessions"))["sessions"]
    assert [s["startsAt"] for s in ss] == ["2026-12-24T10:00:00Z", "2026-12-25T09:00:00Z"]
    for s in ss:
        assert s["totalSeats"] == 400 and s["availableSeats"] == 400, s
    sid = ss[0]["sessionId"]
    seats = assert_ok_json(srv.get(f"/api/v1/concerts/4/sessions/{sid}/seats?limit=1000"))
    got = [(x["seatNumber"], x["grade"], x["price"]) for x in seats["availableSeats"]]
    assert got == [(n, "VIP", 165000) for n in range(1, 101)] + \
                  [(n, "R", 143000) for n in range(101, 401)]


def test_import_unicode_title_and_gapped_blocks(server, tmp_path):
    ev = {"title": "아이유 콘서트 \"HEREH\"", "venue": "잠실 KSPO돔",
          "sessions": ["2026-12-24T19:00:00Z"],
          "blocks": [{"grade": "A", "price": 1000, "from": 5, "to": 6},
                     {"grade": "B", "price": 2000, "from": 10, "to": 10}]}
    db = tmp_path / "u.db"
    run_cli("migrate", "--db", f"sqlite:{db}", check=True)
    cp = run_cli("import", "--db", f"sqlite:{db}", write_event(tmp_path, ev))
    assert cp.returncode == 0, cp
    srv = server(db_path=db, do_seed=False)
    c = assert_ok_json(srv.get("/api/v1/concerts"))["concerts"][0]
    assert c["title"] == ev["title"] and c["venue"] == ev["venue"]
    s = assert_ok_json(srv.get(f"/api/v1/concerts/{c['concertId']}/sessions"))["sessions"][0]
    assert s["startsAt"] == "2026-12-24T19:00:00Z" and s["totalSeats"] == 3
    seats = assert_ok_json(srv.get(
        f"/api/v1/concerts/{c['concertId']}/sessions/{s['sessionId']}/seats"))["availableSeats"]
    assert [(x["seatNumber"], x["grade"], x["price"]) for x in seats] == \
        [(5, "A", 1000), (6, "A", 1000), (10, "B", 2000)]


def _ev(**changes):
    ev = json.loads(json.dumps(GOOD_EVENT))
    for k, v in changes.items():
        if v is None:
            ev.pop(k)
        else:
            ev[k] = v
    return ev


BAD_EVENTS = {
    "overlapping_blocks": (_ev(blocks=[{"grade": "VIP", "price": 1, "from": 1, "to": 100},
                                       {"grade": "R", "price": 1, "from": 100, "to": 200}]),
                           ["overlap"]),
    "bad_date": (_ev(sessions=["2026-12-24T19:00:00Z", "2026-13-45T19:00:00+09:00"]),
                 ["sessions[1]"]),
    "date_without_zone": (_ev(sessions=["2026-12-24T19:00:00"]), ["sessions[0]"]),
    "not_a_date": (_ev(sessions=["tomorrow"]), ["sessions[0]"]),
    "missing_title": (_ev(title=None), ["title"]),
    "missing_venue": (_ev(venue=None), ["venue"]),
    "missing_sessions": (_ev(sessions=None), ["sessions"]),
    "missing_blocks": (_ev(blocks=None), ["blocks"]),
    "empty_sessions": (_ev(sessions=[]), ["sessions"]),
    "empty_blocks": (_ev(blocks=[]), ["blocks"]),
    "unknown_field": (_ev(sponsor="ACME"), ["sponsor"]),
    "unknown_block_field": (_ev(blocks=[{"grade": "R", "price": 1, "from": 1, "to": 2,
                                         "colour": "red"}]), ["colour"]),
    "block_from_after_to": (_ev(blocks=[{"grade": "R", "price": 1, "from": 10, "to": 2}]), []),
    "negative_price": (_ev(blocks=[{"grade": "R", "price": -1, "from": 1, "to": 2}]), ["price"]),
    "string_price": (_ev(blocks=[{"grade": "R", "price": "100", "from": 1, "to": 2}]), ["price"]),
    "zero_seat_number": (_ev(blocks=[{"grade": "R", "price": 1, "from": 0, "to": 2}]), ["from"]),
    "missing_grade": (_ev(blocks=[{"price": 1, "from": 1, "to": 2}]), ["grade"]),
    "title_not_string": (_ev(title=42), ["title"]),
    "not_json": ("{this is not json", ["json"]),
    "truncated_json": (json.dumps(GOOD_EVENT)[:-10], ["json"]),
    "top_level_array": ("[1, 2, 3]", []),
    "empty_file": ("", []),
}


@pytest.mark.parametrize("name", sorted(BAD_EVENTS))
def test_import_bad_event_fails_and_writes_nothing(server, tmp_path, name):
    obj, mentions = BAD_EVENTS[name]
    db = tmp_path / "bad.db"
    run_cli("seed", "--db", f"sqlite:{db}", "--concerts", "1", check=True)
    cp = run_cli("import", "--db", f"sqlite:{db}", write_event(tmp_path, obj))
    assert cp.returncode > 0, f"{name}: import exited {cp.returncode}\n{cp.stdout}\n{cp.stderr}"
    assert cp.stderr.strip(), f"{name}: no message"
    for m in mentions:
        assert m.lower() in cp.stderr.lower(), f"{name}: message does not mention {m!r}: {cp.stderr!r}"
    srv = server(db_path=db, do_seed=False)
    cs = assert_ok_json(srv.get("/api/v1/concerts"))["concerts"]
    assert [c["concertId"] for c in cs] == [1], f"{name}: a failed import wrote {cs}"


def test_import_missing_file_fails(tmp_path):
    cp = run_cli("import", "--db", f"sqlite:{tmp_path}/x.db", tmp_path / "nope.json")
    assert cp.returncode > 0, cp
    assert "nope.json" in cp.stderr, cp.stderr


def test_import_without_file_fails(tmp_path):
    cp = run_cli("import", "--db", f"sqlite:{tmp_path}/x.db")
    assert cp.returncode > 0, cp
    assert cp.stderr.strip()


def test_concert_imported_while_serving_is_listed_once_the_1s_cache_expires(server, tmp_path):
    # The list is cached for 1 s (api/concerts.c); 3 s allows for a slow machine.
    srv = server()
    before = assert_ok_json(srv.get("/api/v1/concerts"))["concerts"]  # now cached
    cp = run_cli("import", "--db", srv.db_url, write_event(tmp_path, GOOD_EVENT))
    assert cp.returncode == 0, cp
    deadline = time.monotonic() + 3.0
    while True:
        cs = assert_ok_json(srv.get("/api/v1/concerts"))["concerts"]
        if len(cs) == len(before) + 1:
            break
        assert time.monotonic() < deadline, "the imported concert is not listed after 3 s"
        time.sleep(0.1)
    assert cs[-1]["title"] == "IU HEREH World Tour" and cs[:-1] == before
