"""The seat page under concurrent holds, cancels and expiries (DESIGN.md 3:
the listing never shows a held or sold seat). In embedded mode seat pages
come from memory (store/sqlite_seatmap.c) kept in step by the committer;
these tests hold it to what a reader of the database would see."""

import threading
import time

import pytest

from booking_util import SEATS, auth, check_invariants, hold, seats_of, sessions_of
from conftest import assert_ok_json

NO_CAPS = ["--limit-hold-user", "0", "--max-live-holds", "0"]


def page_numbers(srv, cid, sid):
    return [s["seatNumber"] for s in seats_of(srv, cid, sid)]


def test_page_never_shows_a_seat_held_for_the_whole_request(server):
    """Writers hold and cancel single seats; readers page the session. A seat
    whose hold was acknowledged before a page was asked for, and whose
    cancel was sent after the page arrived, must not be on that page."""
    srv = server(args=NO_CAPS)
    cid, sid = 2, sessions_of(srv, 2)[0]["sessionId"]
    by_number = {s["seatNumber"]: s["seatId"] for s in seats_of(srv, cid, sid)}
    assert len(by_number) == SEATS
    held = []  # (number, acknowledged at, cancel sent at)
    pages = []  # (sent at, received at, numbers)
    stop = time.monotonic() + 4.0
    errors = []

    def writer(k):
        uid = 20 + k
        numbers = list(range(1 + k, SEATS + 1, 4))  # each writer its own seats
        i = 0
        try:
            while time.monotonic() < stop:
                n = numbers[i % len(numbers)]
                i += 1
                r = hold(srv, uid, cid, sid, [by_number[n]])
                if r.status != 201:
                    errors.append(f"hold of seat {n}: {r!r}")
                    return
                acked = time.monotonic()
                rid = r.json["reservationId"]
                time.sleep(0.005)
                sent = time.monotonic()
                d = srv.delete(f"/api/v1/reservations/{rid}", headers=auth(uid))
                if d.status != 200:
                    errors.append(f"cancel {rid}: {d.status}")
                    return
                held.append((n, acked, sent))
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(repr(e))

    def reader():
        try:
            while time.monotonic() < stop:
                t0 = time.monotonic()
                numbers = page_numbers(srv, cid, sid)
                pages.append((t0, time.monotonic(), set(numbers)))
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[:5]
    assert len(held) > 50 and len(pages) > 50, (len(held), len(pages))
    shown = [(n, p) for (n, a, b) in held for p in pages if a < p[0] and p[1] < b and n in p[2]]
    assert not shown, f"{len(shown)} pages listed a seat held throughout, first: seat {shown[0][0]}"
    # Every hold was cancelled: every seat is back, on the page and in the count.
    assert page_numbers(srv, cid, sid) == list(range(1, SEATS + 1))
    counts = {s["sessionId"]: s["availableSeats"] for s in sessions_of(srv, cid)}
    assert counts[sid] == SEATS
    check_invariants(srv.db_path)


def test_page_shows_a_hold_at_once_and_its_expiry_soon_after(server):
    srv = server(args=NO_CAPS + ["--hold-ttl", "3s"])
    cid, sid = 3, sessions_of(srv, 3)[1]["sessionId"]
    by_number = {s["seatNumber"]: s["seatId"] for s in seats_of(srv, cid, sid)}
    assert page_numbers(srv, cid, sid) == list(range(1, SEATS + 1))  # the page is in memory now
    assert_ok_json(hold(srv, 9, cid, sid, [by_number[n] for n in (2, 3, 40)]), 201)
    gone = [n for n in range(1, SEATS + 1) if n not in (2, 3, 40)]
    assert page_numbers(srv, cid, sid) == gone
    t0 = time.monotonic()
    while page_numbers(srv, cid, sid) != list(range(1, SEATS + 1)):
        assert time.monotonic() - t0 < 6.0, "expired seats not listed again"
        time.sleep(0.05)
    check_invariants(srv.db_path)


def test_refused_hold_leaves_the_page_unchanged(server):
    """A refused hold (one of its seats is taken) takes none of the others
    off the page."""
    srv = server(args=NO_CAPS)
    cid, sid = 1, sessions_of(srv, 1)[2]["sessionId"]
    by_number = {s["seatNumber"]: s["seatId"] for s in seats_of(srv, cid, sid)}
    assert_ok_json(hold(srv, 11, cid, sid, [by_number[20]]), 201)
    r = hold(srv, 12, cid, sid, [by_number[n] for n in (19, 20, 21)])
    assert r.status == 409, r
    assert page_numbers(srv, cid, sid) == [n for n in range(1, SEATS + 1) if n != 20]
    check_invariants(srv.db_path)


def test_a_write_by_another_process_shows_within_a_second_or_two(server):
    """Seats taken behind the server's back (an operator's sqlite3 shell)
    leave the page although the session was already in memory."""
    from test_catalog import set_status
    srv = server()
    cid, sid = 2, sessions_of(srv, 2)[1]["sessionId"]
    assert page_numbers(srv, cid, sid) == list(range(1, SEATS + 1))  # in memory now
    set_status(srv.db_path, sid, [5, 6], "SOLD")
    want = [n for n in range(1, SEATS + 1) if n not in (5, 6)]
    t0 = time.monotonic()
    while page_numbers(srv, cid, sid) != want:
        assert time.monotonic() - t0 < 2.5, "another process's write never showed"
        time.sleep(0.05)
    counts = {s["sessionId"]: s["availableSeats"] for s in sessions_of(srv, cid)}
    assert counts[sid] == SEATS - 2


@pytest.mark.parametrize("cache", ["0", "1KiB"])  # off; too small for any session
def test_pages_from_sql_when_the_seat_map_is_off_or_full(server, cache):
    srv = server(args=NO_CAPS + ["--seat-cache", cache])
    cid, sid = 1, sessions_of(srv, 1)[0]["sessionId"]
    by_number = {s["seatNumber"]: s["seatId"] for s in seats_of(srv, cid, sid)}
    assert len(by_number) == SEATS
    rid = assert_ok_json(hold(srv, 13, cid, sid, [by_number[7]]), 201)["reservationId"]
    assert page_numbers(srv, cid, sid) == [n for n in range(1, SEATS + 1) if n != 7]
    assert srv.delete(f"/api/v1/reservations/{rid}", headers=auth(13)).status == 200
    assert page_numbers(srv, cid, sid) == list(range(1, SEATS + 1))
    r = srv.get(f"/api/v1/concerts/2/sessions/{sid}/seats", headers=auth(1))
    assert r.status == 404, r  # a session of another concert, from SQL too


def test_a_session_in_memory_is_still_only_its_concerts(server):
    srv = server()
    sid = sessions_of(srv, 1)[0]["sessionId"]
    assert len(page_numbers(srv, 1, sid)) == SEATS  # in memory now
    r = srv.get(f"/api/v1/concerts/2/sessions/{sid}/seats", headers=auth(1))
    assert r.status == 404, r
    assert r.json["error"]["code"] == "NOT_FOUND", r
