-- 0001_init.sql -- the whole concertd domain schema (SQLite dialect).
--
-- Applied by store/sqlite.c migrate() inside one BEGIN IMMEDIATE transaction
-- that also sets PRAGMA user_version = 1. Never edit an applied migration:
-- add 0002_*.sql instead.
--
-- Conventions:
--   * Every table is STRICT (SQLite >= 3.37): a value of the wrong type is an
--     error, never silently stored (invariant 6: bad input changes no state).
--   * Times are INTEGER milliseconds since the Unix epoch (UTC).
--   * Money is INTEGER won. Ids are INTEGER PRIMARY KEY (the rowid).
--   * CHECK constraints are the last line of defence for the invariants of
--     DESIGN.md section 3; the service layer checks first and says why.
--
-- Counter rule (sessions.available_seats):
--   available_seats = number of the session's seats with status = 0. EVERY
--   write that changes seats.status (hold, release, expire, cancel, sell) or
--   inserts seats MUST update sessions.available_seats in the SAME transaction.
--   The sessions list reads the counter and never counts seats.

-- A fan. Springs into existence on first use with balance 0.
CREATE TABLE users (
    id         INTEGER PRIMARY KEY CHECK (id > 0),
    -- invariant 2: a balance is never negative. balance = SUM(balance_ledger.amount).
    balance    INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE concerts (
    id         INTEGER PRIMARY KEY,
    title      TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    venue      TEXT NOT NULL CHECK (length(venue) <= 200),
    created_at INTEGER NOT NULL
) STRICT;

-- A dated performance of a concert (the classic API's "schedule").
CREATE TABLE sessions (
    id              INTEGER PRIMARY KEY,
    concert_id      INTEGER NOT NULL REFERENCES concerts (id),
    starts_at       INTEGER NOT NULL,
    total_seats     INTEGER NOT NULL DEFAULT 0 CHECK (total_seats >= 0),
    -- Maintained counter, see "Counter rule" above. The CHECK catches a writer
    -- that forgets to maintain it in one direction or the other.
    available_seats INTEGER NOT NULL DEFAULT 0
                    CHECK (available_seats BETWEEN 0 AND total_seats)
) STRICT;
-- list_sessions: WHERE concert_id = ? ORDER BY starts_at, id (rowid ends the key).
CREATE INDEX sessions_by_concert ON sessions (concert_id, starts_at);

-- A seat of one session. status: 0 available, 1 held, 2 sold.
CREATE TABLE seats (
    id             INTEGER PRIMARY KEY,
    session_id     INTEGER NOT NULL REFERENCES sessions (id),
    seat_number    INTEGER NOT NULL CHECK (seat_number > 0),
    grade          TEXT NOT NULL CHECK (length(grade) BETWEEN 1 AND 32),
    price          INTEGER NOT NULL CHECK (price >= 0),
    status         INTEGER NOT NULL DEFAULT 0 CHECK (status IN (0, 1, 2)),
    -- The reservation that holds or bought the seat. Invariant 1: a seat row
    -- names at most one reservation, and only while it is held or sold, so it
    -- can never be in two live holds nor sold twice. Writers claim seats with
    -- UPDATE ... SET status = 1, reservation_id = ? WHERE id = ? AND status = 0.
    -- (No index: reservations are never deleted, so the FK never searches it.)
    reservation_id INTEGER REFERENCES reservations (id),
    CHECK ((status = 0) = (reservation_id IS NULL)),
    -- A seat number is unique within its session (section 3).
    UNIQUE (session_id, seat_number)
) STRICT;
-- The seat page: WHERE session_id = ? AND status = 0 AND seat_number > ?
-- ORDER BY seat_number LIMIT ?. Partial (only available seats, so the scan
-- never steps over held or sold ones) and covering (grade, price and the
-- rowid id are in the index, so the 10M-row table is never touched): one
-- index range scan returning exactly LIMIT entries. status is a key column
-- although constant here (one header byte per entry): SQLite 3.40 treats a
-- column the query names as needed from the table unless the index holds
-- it, so without it the index is not covering, and with it the planner sees
-- two equality terms and prefers this index over the UNIQUE one.
CREATE INDEX seats_available ON seats (session_id, status, seat_number, grade, price)
    WHERE status = 0;

-- A hold and, once paid, the booking. All its seats belong to session_id.
CREATE TABLE reservations (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id),
    session_id  INTEGER NOT NULL REFERENCES sessions (id),
    status      TEXT NOT NULL
                CHECK (status IN ('HELD', 'PAYMENT_PENDING', 'CONFIRMED', 'CANCELLED', 'EXPIRED')),
    total_price INTEGER NOT NULL CHECK (total_price >= 0),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL, -- end of the hold
    updated_at  INTEGER NOT NULL
) STRICT;
-- The expiry sweeper: WHERE status = 'HELD' AND expires_at <= now. Partial, so
-- it holds only live holds (PAYMENT_PENDING ones do not expire); status is
-- constant inside it, hence not a key column.
CREATE INDEX reservations_held_expiry ON reservations (expires_at) WHERE status = 'HELD';
CREATE INDEX reservations_by_user ON reservations (user_id);

-- The seats of a reservation, kept after the seats are released (history).
CREATE TABLE reservation_seats (
    reservation_id INTEGER NOT NULL REFERENCES reservations (id),
    seat_id        INTEGER NOT NULL REFERENCES seats (id),
    PRIMARY KEY (reservation_id, seat_id)
) STRICT, WITHOUT ROWID;

-- A payment attempt. A card attempt may be PENDING while the gateway's answer
-- is unknown, then COMPLETED or FAILED; failed attempts stay for the record.
CREATE TABLE payments (
    id                INTEGER PRIMARY KEY,
    reservation_id    INTEGER NOT NULL REFERENCES reservations (id),
    user_id           INTEGER NOT NULL REFERENCES users (id),
    amount            INTEGER NOT NULL CHECK (amount >= 0),
    method            TEXT NOT NULL CHECK (method IN ('balance', 'card')),
    status            TEXT NOT NULL CHECK (status IN ('PENDING', 'COMPLETED', 'FAILED', 'REFUNDED')),
    gateway_charge_id TEXT,      -- the gateway's id of a card charge
    idempotency_key   TEXT,      -- also sent to the gateway, so its retries dedupe
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
) STRICT;
-- Invariant 4: a reservation is paid at most once. At most one attempt per
-- reservation is in flight or completed; FAILED (and REFUNDED) ones do not count.
CREATE UNIQUE INDEX payments_one_live ON payments (reservation_id)
    WHERE status IN ('PENDING', 'COMPLETED');
-- The reconciler's worklist: card payments whose outcome is unknown.
CREATE INDEX payments_pending ON payments (updated_at) WHERE status = 'PENDING';

-- Every change of a balance, append-only. Invariant 2 is checkable:
-- users.balance = SUM(amount) of the user's rows, and balance_after >= 0.
CREATE TABLE balance_ledger (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id),
    kind          TEXT NOT NULL CHECK (kind IN ('CHARGE', 'PAYMENT', 'REFUND')),
    -- Signed: charges and refunds add, payments subtract.
    amount        INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    ref           INTEGER REFERENCES payments (id), -- the payment or refunded payment; NULL for charges
    created_at    INTEGER NOT NULL,
    CHECK ((kind = 'PAYMENT' AND amount <= 0) OR (kind <> 'PAYMENT' AND amount >= 0))
) STRICT;
CREATE INDEX balance_ledger_by_user ON balance_ledger (user_id);

-- Transactional outbox: domain events written in the same transaction as the
-- change they describe, published at least once by the relay.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY, -- publication order
    topic        TEXT NOT NULL,       -- 'reservation.held', 'payment.completed', ...
    aggregate_id INTEGER NOT NULL,    -- the reservation or payment id
    payload      TEXT NOT NULL CHECK (json_valid(payload)),
    created_at   INTEGER NOT NULL,
    published_at INTEGER              -- NULL until the relay has published it
) STRICT;
-- The relay's worklist, oldest first; holds only unpublished events.
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Invariant 4: stored first responses of charge and payment requests, replayed
-- for 24 h to retries with the same Idempotency-Key. scope = route and user.
CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 64),
    request_hash TEXT NOT NULL,  -- same key with another body: 409 IDEMPOTENCY_CONFLICT
    status_code  INTEGER,        -- NULL while the first request is still in flight
    response     TEXT,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at); -- the 24 h purge

-- The waiting room's durable copy (embedded mode): survives a restart.
-- user_id has no FK: entering the line does not create a user.
CREATE TABLE waiting_tokens (
    token        TEXT PRIMARY KEY,          -- opaque, >= 128 random bits
    user_id      INTEGER NOT NULL CHECK (user_id > 0),
    seq          INTEGER NOT NULL UNIQUE,   -- arrival order: position in line
    status       TEXT NOT NULL CHECK (status IN ('WAITING', 'ACTIVATED', 'EXPIRED')),
    entered_at   INTEGER NOT NULL,
    activated_at INTEGER,
    expires_at   INTEGER,                   -- for ACTIVATED: activated_at + active_ttl
    CHECK (status <> 'ACTIVATED' OR (activated_at IS NOT NULL AND expires_at IS NOT NULL))
) STRICT;
CREATE INDEX waiting_tokens_by_user ON waiting_tokens (user_id);
-- Entering is idempotent: at most one live (WAITING or ACTIVATED) token per user.
CREATE UNIQUE INDEX waiting_tokens_live_user ON waiting_tokens (user_id)
    WHERE status IN ('WAITING', 'ACTIVATED');
-- Reload and admission in line order; counting the ACTIVATED ones (invariant 5).
CREATE INDEX waiting_tokens_by_status ON waiting_tokens (status, seq);
