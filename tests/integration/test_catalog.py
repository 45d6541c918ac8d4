"""Catalog reads: concerts, sessions and keyset-paged available seats, checked
value by value against what `concertd seed` promises (docs: DESIGN.md 4.1, 5).

Default seed: 3 concerts x 4 sessions x 50 seats; grades by seat number:
1-10 VIP 150000, 11-25 R 120000, 26-50 S 90000; session k of a concert starts
2027-01-01T10:00:00Z + k days."""


import pytest

from booking_util import execute, rows
from conftest import assert_error, assert_json_ct, assert_ok_json

SEATS = 50


def grade_of(n):
    if n <= 10:
        return "VIP", 150000
    if n <= 25:
        return "R", 120000
    return "S", 90000


def sessions_of(srv, cid):
    return assert_ok_json(srv.get(f"/api/v1/concerts/{cid}/sessions"))["sessions"]


def seats_page(srv, cid, sid, query=""):
    body = assert_ok_json(srv.get(f"/api/v1/concerts/{cid}/sessions/{sid}/seats{query}"))
    assert set(body) == {"sessionId", "availableSeats", "nextCursor"}, body
    assert body["sessionId"] == sid
    return body


def walk(srv, cid, sid, limit):
    """Follows nextCursor from the start; returns (seat numbers, pages)."""
    seen, pages, after = [], [], None
    for _ in range(10000):
        q = f"?limit={limit}" + (f"&after={after}" if after is not None else "")
        page = seats_page(srv, cid, sid, q)
        pages.append(page)
        nums = [s["seatNumber"] for s in page["availableSeats"]]
        assert len(nums) <= limit, f"page longer than limit {limit}: {nums}"
        assert nums == sorted(nums) and len(set(nums)) == len(nums), f"not ascending: {nums}"
        if after is not None:
            assert all(n > after for n in nums), f"after={after} returned {nums}"
        seen += nums
        if page["nextCursor"] is None:
            return seen, pages
        assert nums, f"empty page with nextCursor {page['nextCursor']}"
        assert page["nextCursor"] == nums[-1], \
            f"nextCursor {page['nextCursor']} is not the last seat number {nums[-1]}"
        after = page["nextCursor"]
    pytest.fail("cursor walk did not end")


# --- concerts ---------------------------------------------------------------


def test_concerts_lists_seeded_concerts_by_id(shared_server):
    r = shared_server.get("/api/v1/concerts")
    body = assert_ok_json(r)
    assert set(body) == {"concerts"}
    cs = body["concerts"]
    assert [c["concertId"] for c in cs] == [1, 2, 3]
    for i, c in enumerate(cs, 1):
        assert set(c) == {"concertId", "title", "venue"}, c
        assert c["title"] == f"Concert {i}"
        assert isinstance(c["venue"], str) and c["venue"], c


def test_concerts_empty_database_gives_empty_list(server, cli, tmp_path):
    db = tmp_path / "empty.db"
    cli("migrate", "--db", f"sqlite:{db}", check=True)
    srv = server(db_path=db, do_seed=False)
    assert assert_ok_json(srv.get("/api/v1/concerts")) == {"concerts": []}


# --- sessions ---------------------------------------------------------------


def test_sessions_of_concert_have_seeded_dates_and_counts(shared_server):
    body = assert_ok_json(shared_server.get("/api/v1/concerts/1/sessions"))
    assert set(body) == {"concertId", "sessions"}
    assert body["concertId"] == 1
    ss = body["sessions"]
    assert len(ss) == 4
    for k, s in enumerate(ss):
        assert set(s) == {"sessionId", "startsAt", "totalSeats", "availableSeats"}, s
        assert isinstance(s["sessionId"], int) and s["sessionId"] > 0
        assert s["startsAt"] == f"2027-01-0{1 + k}T10:00:00Z", s
        assert s["totalSeats"] == SEATS and s["availableSeats"] == SEATS, s
    assert len({s["sessionId"] for s in ss}) == 4


def test_sessions_ids_differ_between_concerts(shared_server):
    ids = [s["sessionId"] for cid in (1, 2, 3) for s in sessions_of(shared_server, cid)]
    assert len(ids) == 12 and len(set(ids)) == 12, ids


@pytest.mark.parametrize("cid", [4, 999, 9223372036854775807])
def test_sessions_of_unknown_concert_is_404(shared_server, cid):
    assert_error(shared_server.get(f"/api/v1/concerts/{cid}/sessions"), 404, "NOT_FOUND")


# --- seats ------------------------------------------------------------------


def test_seats_default_page_has_every_seat_with_grade_and_price(shared_server):
    sid = sessions_of(shared_server, 1)[0]["sessionId"]
    page = seats_page(shared_server, 1, sid)
    seats = page["availableSeats"]
    assert [s["seatNumber"] for s in seats] == list(range(1, SEATS + 1))
    for s in seats:
        assert set(s) == {"seatId", "seatNumber", "grade", "price"}, s
        assert (s["grade"], s["price"]) == grade_of(s["seatNumber"]), s
        assert isinstance(s["seatId"], int) and s["seatId"] > 0
    assert len({s["seatId"] for s in seats}) == SEATS
    assert page["nextCursor"] is None


def test_seat_ids_are_distinct_across_sessions(shared_server):
    ids = []
    for s in sessions_of(shared_server, 2):
        ids += [x["seatId"] for x in seats_page(shared_server, 2, s["sessionId"])["availableSeats"]]
    assert len(ids) == 4 * SEATS and len(set(ids)) == len(ids)


def test_seats_walk_with_limit_7_visits_every_seat_once(shared_server):
    sid = sessions_of(shared_server, 3)[2]["sessionId"]
    seen, pages = walk(shared_server, 3, sid, 7)
    assert seen == list(range(1, SEATS + 1))
    assert [len(p["availableSeats"]) for p in pages] == [7] * 7 + [1]


def test_seats_exact_multiple_last_full_page_has_null_cursor(shared_server):
    # 50 seats, limit 10: the 5th page is full but nothing follows it.
    sid = sessions_of(shared_server, 1)[1]["sessionId"]
    seen, pages = walk(shared_server, 1, sid, 10)
    assert seen == list(range(1, SEATS + 1))
    assert len(pages) == 5, [p["nextCursor"] for p in pages]
    assert [p["nextCursor"] for p in pages] == [10, 20, 30, 40, None]


def test_seats_limit_1_walk(shared_server):
    sid = sessions_of(shared_server, 2)[3]["sessionId"]
    seen, pages = walk(shared_server, 2, sid, 1)
    assert seen == list(range(1, SEATS + 1))
    assert pages[-1]["nextCursor"] is None


def test_seats_limit_1000_returns_all(shared_server):
    sid = sessions_of(shared_server, 1)[0]["sessionId"]
    page = seats_page(shared_server, 1, sid, "?limit=1000")
    assert [s["seatNumber"] for s in page["availableSeats"]] == list(range(1, SEATS + 1))
    assert page["nextCursor"] is None


@pytest.mark.parametrize("after,expect", [
    (0, list(range(1, SEATS + 1))),
    (25, list(range(26, SEATS + 1))),
    (49, [50]),
    (50, []),
    (51, []),
    (1000000, []),
    (9223372036854775807, []),
])
def test_seats_after_cursor(shared_server, after, expect):
    sid = sessions_of(shared_server, 1)[0]["sessionId"]
    page = seats_page(shared_server, 1, sid, f"?after={after}")
    assert [s["seatNumber"] for s in page["availableSeats"]] == expect
    assert page["nextCursor"] is None


def test_seats_limit_and_after_together(shared_server):
    sid = sessions_of(shared_server, 1)[0]["sessionId"]
    page = seats_page(shared_server, 1, sid, "?after=9&limit=3")
    assert [s["seatNumber"] for s in page["availableSeats"]] == [10, 11, 12]
    assert [s["grade"] for s in page["availableSeats"]] == ["VIP", "R", "R"]
    assert page["nextCursor"] == 12


def test_seats_unknown_query_parameters_are_ignored(shared_server):
    sid = sessions_of(shared_server, 1)[0]["sessionId"]
    page = seats_page(shared_server, 1, sid, "?limit=2&foo=bar&page=9")
    assert [s["seatNumber"] for s in page["availableSeats"]] == [1, 2]
    assert page["nextCursor"] == 2


def test_seats_of_session_of_another_concert_is_404(shared_server):
    other = sessions_of(shared_server, 2)[0]["sessionId"]
    assert_error(shared_server.get(f"/api/v1/concerts/1/sessions/{other}/seats"), 404, "NOT_FOUND")


@pytest.mark.parametrize("path", [
    "/api/v1/concerts/1/sessions/999999/seats",
    "/api/v1/concerts/999/sessions/1/seats",
    "/api/v1/concerts/9223372036854775807/sessions/9223372036854775807/seats",
])
def test_seats_unknown_session_or_concert_is_404(shared_server, path):
    assert_error(shared_server.get(path), 404, "NOT_FOUND")


def test_catalog_responses_are_json_utf8(shared_server):
    for p in ("/api/v1/concerts", "/api/v1/concerts/1/sessions"):
        assert_json_ct(shared_server.get(p))


# --- seats taken behind the server's back -----------------------------------


SEAT_STATUS = {"HELD": 1, "SOLD": 2}          # seats.status (0001_init.sql)
RESERVATION_STATUS = {"HELD": "HELD", "SOLD": "CONFIRMED"}


def set_status(db, session_id, numbers, status):
    """Takes seats behind the server's back the way a hold or a sale leaves
    them: a reservation row owning the seats, seats.status 1 (held) or 2
    (sold), and the session's available_seats counter kept in step. The
    server does not touch these seats meanwhile, so one statement at a time
    is enough (and works on SQLite and PostgreSQL alike)."""
    execute(db, "INSERT INTO users (id, balance, created_at) VALUES (1, 0, 0)"
            " ON CONFLICT (id) DO NOTHING")
    rid = execute(db, "INSERT INTO reservations (user_id, session_id, status, total_price,"
                  " created_at, expires_at, updated_at)"
                  " VALUES (1, ?, ?, 0, 0, 4102444800000, 0) RETURNING id",
                  session_id, RESERVATION_STATUS[status])[0][0]
    q = ",".join("?" * len(numbers))
    ids = [r[0] for r in rows(db, "SELECT id FROM seats WHERE session_id = ? AND status = 0"
                              f" AND seat_number IN ({q})", session_id, *numbers)]
    assert len(ids) == len(numbers), f"seats {numbers} of session {session_id} not all free"
    for i in ids:
        execute(db, "INSERT INTO reservation_seats (reservation_id, seat_id) VALUES (?, ?)", rid, i)
        execute(db, "UPDATE seats SET status = ?, reservation_id = ? WHERE id = ?",
                SEAT_STATUS[status], rid, i)
    execute(db, "UPDATE sessions SET available_seats = available_seats - ? WHERE id = ?",
            len(ids), session_id)


def test_sold_and_held_seats_are_not_listed(server):
    srv = server()
    sid = sessions_of(srv, 1)[0]["sessionId"]
    set_status(srv.db_path, sid, list(range(1, 11)), "HELD")
    set_status(srv.db_path, sid, list(range(20, 31)) + [50], "SOLD")
    expect = [n for n in range(1, SEATS + 1) if not (n <= 10 or 20 <= n <= 30 or n == 50)]
    page = seats_page(srv, 1, sid)
    assert [s["seatNumber"] for s in page["availableSeats"]] == expect
    seen, _ = walk(srv, 1, sid, 7)
    assert seen == expect
    # The other sessions are untouched.
    other = sessions_of(srv, 1)[1]["sessionId"]
    assert len(seats_page(srv, 1, other)["availableSeats"]) == SEATS


def test_fully_taken_session_lists_no_seats(server):
    srv = server()
    sid = sessions_of(srv, 2)[1]["sessionId"]
    set_status(srv.db_path, sid, list(range(1, 26)), "SOLD")
    set_status(srv.db_path, sid, list(range(26, 51)), "HELD")
    for q in ("", "?limit=1", "?limit=1000", "?after=10&limit=5"):
        page = seats_page(srv, 2, sid, q)
        assert page["availableSeats"] == [] and page["nextCursor"] is None, (q, page)
