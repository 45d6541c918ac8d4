"""The k6 scripts of loadtest/k6/, without k6 (not installed here):

  * syntax: each script, its `import ... from 'k6...'` lines stripped, passes
    `node --check` (and a broken copy does not, so the check can fail);
  * options: each scenario has the size the issue asks for (10,000 users in
    line, 300 bookers, 100 users for 1 minute twice) and thresholds on p95
    and on the error rate;
  * behaviour: each script's default function runs a few iterations under
    Node against a real concertd, with k6shim.mjs standing in for the k6 API
    (curl for HTTP): every answer is one its client expects, every check
    passes.

Node comes from Debian's nodejs package, which scripts/deps installs; a
missing node is a failure, not a skip."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from booking_util import check_invariants, scalar
from conftest import REPO_ROOT

K6_DIR = REPO_ROOT / "loadtest" / "k6"
SHIM = Path(__file__).resolve().parent / "k6shim.mjs"
SCENARIOS = ["queue_flood.js", "booking_flow.js", "classic_flow.js", "classic_balance.js"]
K6_IMPORT = re.compile(r"""^\s*import\s+(.+?)\s+from\s+['"](k6(?:/[a-z]+)?)['"]\s*;?\s*$""")
MODULE_OF = {"k6": "k6", "k6/http": "http", "k6/metrics": "metrics"}


def node():
    exe = shutil.which("node") or shutil.which("nodejs")
    if not exe:
        pytest.fail("node is not installed: the k6 scripts cannot be checked. Run scripts/deps "
                    "(it installs Debian's nodejs package)", pytrace=False)
    return exe


def scripts():
    found = sorted(p.name for p in K6_DIR.glob("*.js"))
    assert set(SCENARIOS) <= set(found), f"missing scenarios in {K6_DIR}: {found}"
    return found


def rewrite(src, strip):
    """The script with each k6 import line removed (strip) or turned into
    bindings to the shim's globalThis.__k6 (k6shim.mjs)."""
    out = []
    for line in src.splitlines():
        m = K6_IMPORT.match(line)
        if not m:
            assert "from 'k6" not in line and 'from "k6' not in line, \
                f"a k6 import this check cannot read (keep each on one line): {line!r}"
            out.append(line)
            continue
        if strip:
            continue
        what, module = m.group(1).strip(), MODULE_OF[m.group(2)]
        if what.startswith("{"):
            names = what.strip("{} ").replace(" as ", ": ")
            out.append(f"const {{ {names} }} = globalThis.__k6.{module};")
        elif what.startswith("* as "):
            out.append(f"const {what[5:]} = globalThis.__k6.{module};")
        else:
            out.append(f"const {what} = globalThis.__k6.{module};")
    return "\n".join(out) + "\n"


def stage(tmp_path, strip):
    """Every script of loadtest/k6/, rewritten, in tmp_path as ES modules."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "package.json").write_text('{"type": "module"}\n')
    for name in scripts():
        (tmp_path / name).write_text(rewrite((K6_DIR / name).read_text(), strip))
    return tmp_path


def node_check(path):
    return subprocess.run([node(), "--check", str(path)], capture_output=True, text=True,
                          timeout=30)


def run_script(dir_, name, env, vus=0, iterations=1, timeout=120):
    """Runs k6shim.mjs on a staged script; returns its JSON result."""
    full = {"K6_SCRIPT": str(dir_ / name), "K6_ENV": json.dumps(env),
            "K6_RUN": "1" if vus else "0", "K6_VUS": str(vus), "K6_ITERATIONS": str(iterations),
            "PATH": "/usr/bin:/bin"}
    cp = subprocess.run([node(), str(SHIM)], env=full, capture_output=True, text=True,
                        timeout=timeout)
    assert cp.returncode == 0, f"{name} under k6shim exited {cp.returncode}:\n{cp.stderr}"
    return json.loads(cp.stdout)


def assert_clean_run(res, name):
    """Every answer expected by its client and every check passed."""
    reqs = res["requests"]
    assert reqs, f"{name}: no request was made"
    bad = [r for r in reqs if not r["expected"]]
    assert not bad, f"{name}: answers its client did not expect: {bad[:5]}"
    assert not any(r["status"] >= 500 or r["status"] == 0 for r in reqs), reqs
    failed = {k: v for k, v in res["checks"].items() if v[1]}
    assert not failed, f"{name}: checks failed {failed}"
    assert res["checks"], f"{name}: no check ran"
    assert sum(res["metrics"].get("unexpected_status", [])) == 0


# --- syntax and options -----------------------------------------------------------------


def test_every_k6_script_parses(tmp_path):
    d = stage(tmp_path / "stripped", strip=True)
    for name in scripts():
        cp = node_check(d / name)
        assert cp.returncode == 0, f"{name} does not parse:\n{cp.stderr}"
    # The check can fail: a script with a syntax error does not pass.
    broken = d / "broken.js"
    broken.write_text((d / "classic_flow.js").read_text().replace("function flow(", "function ("))
    assert node_check(broken).returncode != 0


def test_every_scenario_has_its_size_and_thresholds(tmp_path):
    d = stage(tmp_path / "bound", strip=False)
    want = {
        "queue_flood.js": ("per-vu-iterations", {"vus": 10000, "iterations": 1}),
        "booking_flow.js": ("per-vu-iterations", {"vus": 300, "iterations": 1}),
        "classic_flow.js": ("constant-vus", {"vus": 100, "duration": "1m"}),
        "classic_balance.js": ("constant-vus", {"vus": 100, "duration": "1m"}),
    }
    for name, (executor, size) in want.items():
        opts = run_script(d, name, {})["options"]
        (scenario,) = opts["scenarios"].values()
        assert scenario["executor"] == executor, (name, scenario)
        for k, v in size.items():
            assert scenario[k] == v, (name, k, scenario)
        th = opts["thresholds"]
        assert any(e.startswith("p(95)<") for e in th["http_req_duration"]), (name, th)
        assert th["http_req_failed"] == ["rate<=0"], (name, th)
        assert th["checks"] == ["rate==1"], (name, th)
    # The environment sizes a run.
    opts = run_script(d, "classic_flow.js", {"VUS": "7", "DURATION": "5s", "P95_MS": "3"})["options"]
    assert opts["scenarios"]["flow"]["vus"] == 7 and opts["scenarios"]["flow"]["duration"] == "5s"
    assert opts["thresholds"]["http_req_duration"] == ["p(95)<3"]


# --- each script's steps against a real concertd --------------------------------------------


def test_queue_flood_script_gets_users_admitted(server, tmp_path):
    srv = server(tokens=False, args=["--queue-admit-per-sec", "20"])
    d = stage(tmp_path, strip=False)
    res = run_script(d, "queue_flood.js", {"BASE_URL": srv.url, "POLL": "0.05"}, vus=4)
    assert_clean_run(res, "queue_flood.js")
    assert sum(res["metrics"]["queue_admitted"]) == 4
    assert sum(1 for r in res["requests"] if r["name"] == "poll") >= 1
    for uid in range(1000001, 1000005):
        assert srv.get(f"/api/token/{uid}", token=None).json["status"] == "ACTIVATED"


def test_booking_flow_script_books_and_pays(server, tmp_path):
    srv = server(seed=["--users", "5", "--balance", "100000000"])
    d = stage(tmp_path, strip=False)
    res = run_script(d, "booking_flow.js", {"BASE_URL": srv.url}, vus=5)
    assert_clean_run(res, "booking_flow.js")
    assert sum(res["metrics"]["bookings_paid"]) == 5
    assert [r["name"] for r in res["requests"][:4]] == ["sessions", "seats", "hold", "pay"]
    assert scalar(srv.db_path, "SELECT count(*) FROM reservations WHERE status = 'CONFIRMED'") == 5
    check_invariants(srv.db_path)


def test_classic_flow_script_goes_through_the_line_and_pays(server, tmp_path):
    srv = server(seed=["--users", "3", "--balance", "100000000"], tokens=False,
                 args=["--queue-admit-per-sec", "20"])
    d = stage(tmp_path, strip=False)
    res = run_script(d, "classic_flow.js", {"BASE_URL": srv.url, "POLL": "0.05", "THINK": "0"},
                     vus=3, iterations=2)
    assert_clean_run(res, "classic_flow.js")
    assert sum(res["metrics"]["bookings_paid"]) == 6  # each user twice, back through the line
    steps = [r["name"] for r in res["requests"]]
    for step in ("token", "status", "concerts", "schedules", "seats", "reserve", "pay"):
        assert step in steps, (step, steps)
    assert scalar(srv.db_path, "SELECT count(*) FROM reservations WHERE status = 'CONFIRMED'") == 6
    check_invariants(srv.db_path)


def test_classic_balance_script_reads_and_charges(server, tmp_path):
    srv = server(tokens=False)
    d = stage(tmp_path, strip=False)
    res = run_script(d, "classic_balance.js",
                     {"BASE_URL": srv.url, "THINK": "0", "USERS": "3", "USER_BASE": "700"},
                     vus=2, iterations=4)
    assert_clean_run(res, "classic_balance.js")
    charges = [r for r in res["requests"] if r["name"] == "charge"]
    assert len(charges) == 8 and all(r["status"] == 200 and r["method"] == "PUT" for r in charges)
    total = scalar(srv.db_path, "SELECT sum(balance) FROM users WHERE id BETWEEN 701 AND 703")
    assert total >= 8 * 6000
    check_invariants(srv.db_path)
