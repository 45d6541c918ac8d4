"""Input validation of the catalog routes: every bad path id or query value is
a 400 INVALID_REQUEST whose message names the parameter (DESIGN.md 4: a path id
that is not a positive int64 is 400, not 404; the message names {cid} or {sid}
or says "concert"/"session"); unknown paths are 404; known
paths with the wrong method are 405 with an Allow header."""

import pytest

from conftest import assert_error, assert_ok_json

BAD_IDS = ["abc", "0", "-1", "1.5", "9223372036854775808", "99999999999999999999999",
           "1e3", "0x10", "1abc", "-0"]


def first_session(srv, cid=1):
    return assert_ok_json(srv.get(f"/api/v1/concerts/{cid}/sessions"))["sessions"][0]["sessionId"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_concert_id_in_sessions_path_is_400(shared_server, bad):
    assert_error(shared_server.get(f"/api/v1/concerts/{bad}/sessions"), 400, "INVALID_REQUEST",
                 [("cid", "concert")])


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_concert_id_in_seats_path_is_400(shared_server, bad):
    sid = first_session(shared_server)
    assert_error(shared_server.get(f"/api/v1/concerts/{bad}/sessions/{sid}/seats"),
                 400, "INVALID_REQUEST", [("cid", "concert")])


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_session_id_is_400(shared_server, bad):
    assert_error(shared_server.get(f"/api/v1/concerts/1/sessions/{bad}/seats"),
                 400, "INVALID_REQUEST", [("sid", "session")])


def test_largest_int64_id_is_valid_and_not_found(shared_server):
    assert_error(shared_server.get("/api/v1/concerts/9223372036854775807/sessions"),
                 404, "NOT_FOUND")


@pytest.mark.parametrize("value", ["0", "1001", "-1", "abc", "1.5", "", "99999999999999999999",
                                   "9223372036854775808", "1e2", "10abc", " 5"])
def test_bad_limit_is_400_naming_limit(shared_server, value):
    sid = first_session(shared_server)
    from urllib.parse import quote
    r = shared_server.get(f"/api/v1/concerts/1/sessions/{sid}/seats?limit={quote(value)}")
    assert_error(r, 400, "INVALID_REQUEST", "limit")


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "", "9223372036854775808",
                                   "99999999999999999999", "1e2", "-9223372036854775808"])
def test_bad_after_is_400_naming_after(shared_server, value):
    sid = first_session(shared_server)
    r = shared_server.get(f"/api/v1/concerts/1/sessions/{sid}/seats?after={value}")
    assert_error(r, 400, "INVALID_REQUEST", "after")


@pytest.mark.parametrize("q", ["?limit=1", "?limit=1000", "?after=0", "?after=9223372036854775807",
                               "?limit=100&after=0"])
def test_boundary_query_values_are_accepted(shared_server, q):
    sid = first_session(shared_server)
    assert_ok_json(shared_server.get(f"/api/v1/concerts/1/sessions/{sid}/seats{q}"))


def test_bad_query_on_unknown_session_still_400(shared_server):
    # Validation happens before lookup: the client's mistake is the bad value.
    assert_error(shared_server.get("/api/v1/concerts/1/sessions/999999/seats?limit=0"),
                 400, "INVALID_REQUEST", "limit")


@pytest.mark.parametrize("path", [
    "/nope",
    "/api",
    "/api/v1",
    "/api/v1/concert",
    "/api/v2/concerts",
    "/api/v1/concerts/1",
    "/api/v1/concerts/1/session",
    "/api/v1/concerts/1/sessions/1",
    "/api/v1/concerts/1/sessions/1/seatz",
    "/api/v1/concerts/1/sessions/1/seats/1",
    "/health",
    "/health/dead",
])
def test_unknown_path_is_404(shared_server, path):
    assert_error(shared_server.get(path), 404, "NOT_FOUND")


def allow_set(r):
    allow = r.headers.get("Allow")
    assert allow, f"405 without an Allow header: {r!r}"
    return {m.strip().upper() for m in allow.split(",") if m.strip()}


@pytest.mark.parametrize("method,path", [
    ("POST", "/api/v1/concerts"),
    ("PUT", "/api/v1/concerts"),
    ("DELETE", "/api/v1/concerts"),
    ("PATCH", "/api/v1/concerts"),
    ("DELETE", "/api/v1/concerts/1/sessions"),
    ("POST", "/api/v1/concerts/1/sessions"),
    ("PUT", "/api/v1/concerts/1/sessions/1/seats"),
    ("DELETE", "/api/v1/concerts/1/sessions/1/seats"),
    ("POST", "/health/live"),
    ("DELETE", "/health/ready"),
])
def test_wrong_method_is_405_with_allow(shared_server, method, path):
    r = shared_server.request(method, path)
    assert_error(r, 405, "METHOD_NOT_ALLOWED")
    allowed = allow_set(r)
    assert "GET" in allowed, f"Allow {allowed} lacks GET"
    assert method not in allowed, f"Allow {allowed} lists the refused method {method}"


def test_405_with_bad_id_in_path(shared_server):
    # The method is wrong whatever the id: either answer is a 4xx JSON error,
    # never a 2xx or 5xx.
    r = shared_server.request("DELETE", "/api/v1/concerts/abc/sessions")
    assert r.status in (400, 405), r
    assert_error(r, r.status, {400: "INVALID_REQUEST", 405: "METHOD_NOT_ALLOWED"}[r.status])
