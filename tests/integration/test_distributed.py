"""Distributed mode, store half (issue 7): concertd on PostgreSQL.

Always runs against a throwaway PostgreSQL cluster (pgcluster.py), whatever
--store says: `concertd migrate`, seed and import on PostgreSQL; two
concertd instances on one database, where the invariants must hold across
processes (a seat raced through both is held once, one user's balance
charged through both adds up exactly, a reservation paid through both is
paid once, an Idempotency-Key replayed through both moves money once); and
PostgreSQL stopped under a running server: 503 UNAVAILABLE with /health/ready
naming the database, no acknowledged write lost, recovery when it returns.

The waiting room of each instance is its own here (the shared Redis queue is
another adapter), so the users start with pre-issued ACTIVATED tokens
(`seed --active-tokens`), which both instances load at start."""

import threading
import time
from pathlib import Path

import pytest

from booking_util import auth, balance, charge, check_invariants, hold, pay, race, rows, scalar
from conftest import REPO_ROOT, assert_error, assert_ok_json, queue_env, run_cli, token_seed_args

pytestmark = pytest.mark.distributed

SEATS = 50


@pytest.fixture
def pg_db(pg_cluster):
    db = pg_cluster.new_database()
    yield db
    pg_cluster.drop_database(db)


def two_instances(server, db, users, seed=(), args=()):
    """Seeds db (users 1..users with ACTIVATED tokens) and starts two
    concertd on it with args."""
    run_cli("seed", "--db", db.url, *token_seed_args(["--users", str(users), *seed]),
            env=queue_env(db), check=True)
    a = server(db_path=db, do_seed=False, tokens=False, args=list(args))
    b = server(db_path=db, do_seed=False, tokens=False, args=list(args))
    return a, b


# With the live-hold cap off, a committer sends the holds of a batch ahead,
# all in one round trip (src/store/pg_commit.c note 8); with it on, each
# hold checks the cap first and runs alone. Races run both ways.
HOLD_PATHS = pytest.mark.parametrize("hold_args", [[], ["--max-live-holds", "0"]],
                                     ids=["capped", "sent-ahead"])


def assert_no_deadlock(*servers):
    """Hold batches lock their seats in one ordered step (pg_commit.c note 9):
    none may be a deadlock victim, which PostgreSQL finds only after
    deadlock_timeout (1 s) while every hold behind it waits."""
    for srv in servers:
        assert "sqlstate=40P01" not in srv.stderr_text(), "a hold batch deadlocked"


def first_session(srv, cid=1):
    body = assert_ok_json(srv.get(f"/api/v1/concerts/{cid}/sessions", headers=auth(1)))
    return body["sessions"][0]["sessionId"]


def seat_ids(srv, cid, sid, numbers):
    body = assert_ok_json(srv.get(f"/api/v1/concerts/{cid}/sessions/{sid}/seats?limit=1000",
                                  headers=auth(1)))
    by_number = {s["seatNumber"]: s["seatId"] for s in body["availableSeats"]}
    return [by_number[n] for n in numbers]


# --- schema, seed, import ---------------------------------------------------


def test_migrate_creates_the_schema_once_on_an_empty_database(pg_cluster):
    pg_cluster.admin("DROP DATABASE IF EXISTS migrate_me")
    pg_cluster.admin("CREATE DATABASE migrate_me")
    url = pg_cluster.url("migrate_me")
    try:
        for _ in range(2):  # idempotent
            cp = run_cli("migrate", "--db", url)
            assert cp.returncode == 0, cp.stderr
            assert "schema up to date" in cp.stdout
        from pgcluster import PgDatabase
        db = PgDatabase(pg_cluster, "migrate_me")
        assert rows(db, "SELECT version FROM schema_version") == [(1,)]
        assert scalar(db, "SELECT count(*) FROM seats") == 0
    finally:
        pg_cluster.admin("DROP DATABASE IF EXISTS migrate_me WITH (FORCE)")


def test_seed_and_import_on_postgres(server, pg_db):
    run_cli("seed", "--db", pg_db.url, "--concerts", "2", "--seats-per-session", "30",
            check=True)
    cp = run_cli("import", "--db", pg_db.url, REPO_ROOT / "docs" / "examples" / "event.json")
    assert cp.returncode == 0, cp.stderr
    srv = server(db_path=pg_db, do_seed=False)
    concerts = assert_ok_json(srv.get("/api/v1/concerts"))["concerts"]
    assert [c["concertId"] for c in concerts] == [1, 2, 3]  # import continues the ids
    assert scalar(pg_db, "SELECT count(*) FROM seats WHERE session_id IN"
                  " (SELECT id FROM sessions WHERE concert_id = 1)") == 4 * 30
    assert scalar(pg_db, "SELECT count(*) FROM sessions WHERE concert_id = 3") >= 1
    check_invariants(pg_db)


# --- two instances, one database --------------------------------------------


@HOLD_PATHS
def test_seat_raced_through_two_instances_is_held_once(server, pg_db, hold_args):
    a, b = two_instances(server, pg_db, 200, args=hold_args)
    sid = first_session(a)
    seat = seat_ids(a, 1, sid, [25])[0]
    results = race(200, lambda i: hold((a, b)[i % 2], i + 1, 1, sid, [seat]))
    statuses = [r.status for r in results]
    assert statuses.count(201) == 1, sorted(statuses)[-5:]
    assert statuses.count(409) == 199, set(statuses)
    assert all(r.json["error"]["code"] == "SEAT_UNAVAILABLE" for r in results if r.status == 409)
    winner = next(r.json for r in results if r.status == 201)
    assert rows(pg_db, "SELECT status, reservation_id FROM seats WHERE id = ?", seat) == \
        [(1, winner["reservationId"])]
    assert scalar(pg_db, "SELECT count(*) FROM reservations") == 1
    assert scalar(pg_db, "SELECT available_seats FROM sessions WHERE id = ?", sid) == SEATS - 1
    check_invariants(pg_db)
    assert_no_deadlock(a, b)


@HOLD_PATHS
def test_overlapping_holds_through_two_instances_never_share_a_seat(server, pg_db, hold_args):
    import random
    a, b = two_instances(server, pg_db, 150, args=hold_args)
    sid = first_session(a, 2)
    pool = seat_ids(a, 2, sid, range(1, 11))
    rng = random.Random(7)
    wanted = [rng.sample(pool, rng.randint(2, 4)) for _ in range(150)]
    results = race(150, lambda i: hold((a, b)[i % 2], i + 1, 2, sid, wanted[i]))
    assert all(r.status in (201, 409) for r in results), {r.status for r in results}
    won = [r.json for r in results if r.status == 201]
    taken = [s["seatId"] for w in won for s in w["seats"]]
    assert won and len(taken) == len(set(taken)), "a seat is in two holds"
    for i, r in enumerate(results):
        if r.status == 409:  # refused only because a seat it wanted really was taken
            assert set(wanted[i]) & set(taken), f"refused with all seats free: {wanted[i]}"
    assert scalar(pg_db, "SELECT available_seats FROM sessions WHERE id = ?", sid) == \
        SEATS - len(taken)
    check_invariants(pg_db)
    assert_no_deadlock(a, b)


def test_balance_charged_through_two_instances_adds_up_exactly(server, pg_db):
    a, b = two_instances(server, pg_db, 10)
    amounts = [1000 + i for i in range(200)]
    results = race(200, lambda i: charge((a, b)[i % 2], 77, amounts[i]))
    assert all(r.status == 200 for r in results), {r.status for r in results}
    assert balance(a, 77) == balance(b, 77) == sum(amounts)
    assert scalar(pg_db, "SELECT count(*) FROM balance_ledger WHERE user_id = 77") == 200
    # every response's balance is a distinct step of one sequence
    seen = sorted(r.json["balance"] for r in results)
    assert len(set(seen)) == 200 and seen[-1] == sum(amounts)
    check_invariants(pg_db)


def test_reservation_paid_through_two_instances_is_paid_once(server, pg_db):
    a, b = two_instances(server, pg_db, 5, seed=["--balance", "1000000"])
    sid = first_session(a)
    seat = seat_ids(a, 1, sid, [3])[0]
    held = assert_ok_json(hold(a, 2, 1, sid, [seat]), 201)
    price = held["totalPrice"]
    results = race(20, lambda i: pay((a, b)[i % 2], 2, held["reservationId"]))
    statuses = [r.status for r in results]
    assert statuses.count(201) == 1, statuses
    assert set(statuses) <= {201, 403, 409}, statuses
    assert balance(a, 2) == 1000000 - price
    assert scalar(pg_db, "SELECT count(*) FROM payments WHERE status = 'COMPLETED'") == 1
    check_invariants(pg_db)


def test_idempotency_key_replayed_through_two_instances_moves_money_once(server, pg_db):
    a, b = two_instances(server, pg_db, 5)
    results = race(20, lambda i: charge((a, b)[i % 2], 5, 777, key="same-key-1"))
    assert all(r.status == 200 for r in results), {r.status for r in results}
    assert {r.raw for r in results} == {results[0].raw}
    assert balance(b, 5) == 777
    assert scalar(pg_db, "SELECT count(*) FROM balance_ledger WHERE user_id = 5") == 1
    assert_error(charge(a, 5, 778, key="same-key-1"), 409, "IDEMPOTENCY_CONFLICT")


# --- PostgreSQL stopped and restarted under a running server --------------------


@pytest.fixture
def private_cluster():
    """A cluster of this test's own, which it may stop and start."""
    from pgcluster import PgCluster
    from conftest import require_binary
    cluster = PgCluster(require_binary())
    try:
        cluster.start()
        cluster.admin("CREATE DATABASE concert")
        yield cluster
    finally:
        cluster.destroy()


@pytest.mark.fault
@pytest.mark.slow
def test_postgres_down_is_503_and_recovers_without_losing_acknowledged_writes(
        server, private_cluster):
    from pgcluster import PgDatabase
    db = PgDatabase(private_cluster, "concert")
    srv = server(db_path=db, seed=["--users", "10"])
    acked, tried = [], []
    stop = threading.Event()

    def charger():
        n = 0
        while not stop.is_set():
            n += 1
            amount = 100 + n
            tried.append(amount)
            try:
                r = charge(srv, 9, amount)
            except OSError:
                continue
            if r.status == 200:
                acked.append(amount)
            else:
                assert_error(r, 503, "UNAVAILABLE")
            time.sleep(0.005)

    t = threading.Thread(target=charger, daemon=True)
    t.start()
    time.sleep(0.5)
    private_cluster.stop_server("fast")
    try:
        down = srv.get("/health/ready")
        assert down.status == 503 and down.json["failed"] == "database", down
        assert_error(charge(srv, 3, 10), 503, "UNAVAILABLE")
        assert_error(srv.get("/api/v1/users/3/balance"), 503, "UNAVAILABLE")
        assert srv.get("/health/live").status == 200
        time.sleep(0.5)
    finally:
        private_cluster.start()
    deadline = time.monotonic() + 10
    while srv.get("/health/ready").status != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert assert_ok_json(srv.get("/health/ready"))["status"] == "ready"
    time.sleep(0.5)
    stop.set()
    t.join(15)
    assert not t.is_alive()
    assert acked, "no charge was acknowledged"
    got = balance(srv, 9)
    # every acknowledged charge is there; an unacknowledged one may or may not be
    assert sum(acked) <= got <= sum(tried), (sum(acked), got, sum(tried))
    assert assert_ok_json(charge(srv, 3, 10)) == {"userId": 3, "balance": 10}
    check_invariants(db)


# --- the waiting room's copy in PostgreSQL ------------------------------------------


def test_tokens_entered_and_admitted_at_once_are_all_kept(server, pg_db):
    """Each new token is saved WAITING and, admitted within a tick, saved
    again ACTIVATED; with several committers the two saves can run in two
    transactions at once (a unique race on waiting_tokens that once failed
    the later save). Every enter must succeed, nothing may be logged as
    lost, and a restart must find every token ACTIVATED."""
    from concurrent.futures import ThreadPoolExecutor
    args = ["--queue-admit-per-sec", "1000000", "--queue-max-active", "100000",
            "--queue-tick", "10ms"]
    # The local queue's tokens in PostgreSQL are the subject, whatever
    # CONCERT_TEST_QUEUE says.
    local = {"CONCERT_QUEUE": "local"}
    srv = server(db_path=pg_db, args=args, tokens=False, seed=["--concerts", "0"], env=local)
    q = "/api/v1/waiting-queues"
    with ThreadPoolExecutor(max_workers=32) as ex:
        got = list(ex.map(lambda u: srv.post(q, {"userId": u}, token=None), range(1, 601)))
    assert all(r.status == 201 for r in got), {r.status for r in got}
    tokens = [r.json["token"] for r in got]
    deadline = time.monotonic() + 10
    while assert_ok_json(srv.get(q + "/stats", token=None))["active"] < 600:
        assert time.monotonic() < deadline, "not all admitted within 10 s"
        time.sleep(0.05)
    assert srv.stop() == 0
    assert "differ" not in srv.stderr_text(), srv.stderr_text()[-2000:]
    assert scalar(pg_db, "SELECT count(*) FROM waiting_tokens WHERE status = 'ACTIVATED'") == 600
    again = server(db_path=pg_db, args=args, do_seed=False, tokens=False, env=local)
    assert all(assert_ok_json(again.get(q, token=t))["status"] == "ACTIVATED" for t in tokens)
