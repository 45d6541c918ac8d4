"""Helpers of the security tests (test_security.py, test_abuse.py,
test_bad_input.py): HS256 JWTs made with the standard library, and a
snapshot of every table a refused request must leave alone."""

import base64
import hashlib
import hmac
import json
import time

from booking_util import rows

SECRET = "test-secret-0123456789abcdef"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(sub, secret=SECRET, exp_in=300, alg="HS256", extra=None, header=None):
    """A compact JWT for sub (None: no sub claim); exp_in seconds from now
    (None: no exp). alg names the header's algorithm; only HS256 and HS512
    are signed, "none" gets an empty signature."""
    claims = {} if sub is None else {"sub": sub}
    if exp_in is not None:
        claims["exp"] = int(time.time()) + exp_in
    claims.update(extra or {})
    head = b64url(json.dumps(header or {"alg": alg, "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    signing = f"{head}.{body}".encode()
    if alg == "none":
        sig = ""
    else:
        digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
        sig = b64url(hmac.new(secret.encode(), signing, digest).digest())
    return f"{head}.{body}.{sig}"


def bearer(uid, **kw):
    return {"Authorization": f"Bearer {jwt(str(uid), **kw)}"}


def state(db_path):
    """Every row a refused request must leave alone (not timestamps of
    reads: nothing here changes on a read)."""
    return {
        "seats": rows(db_path, "SELECT id, status, reservation_id FROM seats ORDER BY id"),
        "reservations": rows(db_path, "SELECT * FROM reservations ORDER BY id"),
        "payments": rows(db_path, "SELECT * FROM payments ORDER BY id"),
        "balances": rows(db_path, "SELECT id, balance FROM users ORDER BY id"),
        "ledger": rows(db_path, "SELECT * FROM balance_ledger ORDER BY id"),
        "outbox": rows(db_path, "SELECT id, topic, aggregate_id FROM outbox ORDER BY id"),
        "idempotency": rows(db_path, "SELECT count(*) FROM idempotency_keys"),
        "sessions": rows(db_path, "SELECT id, available_seats FROM sessions ORDER BY id"),
    }


def assert_unchanged(before, after):
    changed = {k: (before[k][:5], after[k][:5]) for k in before if before[k] != after[k]}
    assert not changed, f"a refused request changed state: {changed}"
