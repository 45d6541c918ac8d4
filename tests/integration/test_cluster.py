"""Distributed mode as deployed: scripts/cluster starts PostgreSQL, Redis,
two concertd and HAProxy on loopback, and these tests talk to HAProxy.

What a user of the cluster would notice: the waiting line is one line
whichever instance answers, and losing an instance in the middle of a run
loses nothing that was acknowledged (a client that retries with its
Idempotency-Key ends with every charge applied exactly once)."""

import json
import os
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import BIN, REPO_ROOT, require_binary

pytestmark = pytest.mark.fault

SEEDED_ACTIVE = 10  # users 1..10 hold ACTIVATED tokens: the line cannot move (max_active 5)


def call(url, method="GET", body=None, headers=None, timeout=5.0):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw or b"null")
        except ValueError:  # HAProxy's own 502/503 page
            return e.code, raw[:200]


@pytest.fixture(scope="module")
def cluster():
    require_binary()
    # Not under pytest's 0700 tmp dirs: PostgreSQL runs as its own user when
    # we are root, and must reach its data directory.
    top = Path(tempfile.mkdtemp(prefix="concertd-cluster-"))
    top.chmod(0o755)
    d = top / "c"
    env = {**os.environ, "CONCERTD_BIN": str(BIN),
           "CLUSTER_SEED": f"--users {SEEDED_ACTIVE} --active-tokens queue_token_{{n}} --concerts 1",
           "CLUSTER_SERVE_ARGS": "--queue-max-active 5 --log-level warn"}
    cp = subprocess.run([str(REPO_ROOT / "scripts" / "cluster"), "start", str(d)], env=env,
                        capture_output=True, text=True, timeout=180)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    vals = dict(line.split("=", 1) for line in (d / "env").read_text().splitlines())
    try:
        yield vals, d
    finally:
        subprocess.run([str(REPO_ROOT / "scripts" / "cluster"), "stop", str(d)], timeout=120)
        assert not d.exists(), "scripts/cluster stop left its directory behind"
        top.rmdir()


def test_one_line_across_instances_through_the_balancer(cluster):
    vals, _ = cluster
    url = vals["URL"] + "/api/v1/waiting-queues"
    tokens = []
    for u in range(100, 130):  # HAProxy alternates: every other one per instance
        status, body = call(url, "POST", {"userId": u})
        assert status == 201, body
        tokens.append(body["token"])
    positions = [call(url, headers={"QUEUE-TOKEN": t})[1]["position"] for t in tokens]
    assert positions == list(range(1, 31)), positions
    # Each instance reads the same line directly, too.
    for inst in ("INSTANCE_1", "INSTANCE_2"):
        status, body = call(vals[inst] + "/api/v1/waiting-queues", headers={"QUEUE-TOKEN": tokens[-1]})
        assert status == 200 and body["position"] == 30, body


def test_killing_an_instance_loses_no_acknowledged_charge(cluster):
    vals, d = cluster
    base, user, amount, n = vals["URL"], 7, 1000, 240
    charge = f"{base}/api/v1/users/{user}/balance/charge"
    before = call(f"{base}/api/v1/users/{user}/balance")[1]["balance"]
    acked, failures = set(), []
    lock = threading.Lock()

    def client(keys):
        for k in keys:
            deadline = time.monotonic() + 20
            while True:  # a careful client: retry the same key until it is answered
                try:
                    status, body = call(charge, "POST", {"amount": amount},
                                        headers={"Idempotency-Key": f"c-{k}"})
                except (OSError, urllib.error.URLError):
                    status, body = None, None
                if status == 200:
                    with lock:
                        acked.add(k)
                    break
                if time.monotonic() > deadline:
                    with lock:
                        failures.append((k, status, body))
                    break
                time.sleep(0.05)

    keys = list(range(n))
    threads = [threading.Thread(target=client, args=(keys[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    while len(acked) < n // 4:
        time.sleep(0.01)
    subprocess.run([str(REPO_ROOT / "scripts" / "cluster"), "kill", "1", str(d)], check=True)
    for t in threads:
        t.join(60)
    assert not failures, failures[:5]
    assert len(acked) == n
    # HAProxy noticed: the survivor answers everything now.
    for _ in range(10):
        assert call(f"{base}/health/ready")[0] == 200
    after = call(f"{base}/api/v1/users/{user}/balance")[1]["balance"]
    assert after - before == n * amount, (before, after)
