"""A real Prometheus (Debian's package) scrapes a real concertd under a
little load, with deploy/'s alert rules loaded (issue 9, "Prometheus
scrapes concertd in a test"). Through Prometheus's HTTP API: the series
arrive with their route templates, every rule evaluates without error,
every query of the Grafana dashboard is valid PromQL that Prometheus
accepts, and when the payment gateway goes down the breaker and 5xx
alerts fire.

The rules are deploy/prometheus/alerts.yml as they are, except that each
`for:` is cut to 2 s and the scrape and evaluation intervals are 1 s, so
the test takes seconds rather than minutes."""

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from booking_util import hold, pay
from conftest import REPO_ROOT, free_port, http_request
from test_gateway import mockpg  # noqa: F401  (the fixture)

PROMETHEUS = shutil.which("prometheus")
ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "concertd.json"


class Prometheus:
    """prometheus on a free loopback port with a temporary storage dir;
    stop() ends this process (by its pid) and nothing else."""

    def __init__(self, workdir, targets):
        assert PROMETHEUS, "prometheus is missing: scripts/deps installs Debian's package"
        rules = re.sub(r"(?m)^(\s+for:) \S+$", r"\1 2s", ALERTS.read_text())
        (workdir / "alerts.yml").write_text(rules)
        (workdir / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "rule_files:\n  - alerts.yml\n"
            "scrape_configs:\n  - job_name: concertd\n    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n")
        self.port = free_port()
        self.log = open(workdir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
             "--storage.tsdb.retention.time=1h"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        self.workdir = workdir
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_text()
            try:
                if http_request("127.0.0.1", self.port, "GET", "/-/ready", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"prometheus did not get ready:\n{self.log_text()}", pytrace=False)

    def log_text(self):
        return (self.workdir / "prometheus.log").read_text(errors="replace")[-3000:]

    def api(self, path, **params):
        q = urllib.parse.urlencode(params)
        r = http_request("127.0.0.1", self.port, "GET", f"/api/v1/{path}?{q}", timeout=10)
        return r.status, r.json

    def query(self, expr):
        status, body = self.api("query", query=expr)
        assert status == 200 and body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def wait(self, what, fn, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            v = fn()
            if v:
                return v
            assert time.monotonic() < deadline, f"timed out waiting for {what}\n{self.log_text()}"
            time.sleep(0.5)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def prometheus_for(tmp_path):
    started = []

    def start(targets):
        p = Prometheus(tmp_path, targets)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def load(srv, stop):
    """A little steady traffic: the concert list, sessions and a poll."""
    while not stop.is_set():
        srv.get("/api/v1/concerts")
        srv.get("/api/v1/concerts/1/sessions")
        srv.get("/api/v1/waiting-queues/stats", token=None)
        time.sleep(0.02)


def alerts(prom):
    status, body = prom.api("alerts")
    assert status == 200, body
    return {(a["labels"]["alertname"], a["state"]) for a in body["data"]["alerts"]}


@pytest.mark.slow
def test_prometheus_scrapes_concertd_and_the_alert_rules_evaluate(server, mockpg,  # noqa: F811
                                                                   prometheus_for):
    srv = server(seed=["--price", "1000", "--users", "20", "--balance", "100000"],
                 args=["--pg-url", mockpg.url, "--pg-timeout", "300ms",
                       "--pg-breaker-window", "2", "--pg-breaker-min-calls", "2",
                       "--pg-breaker-failure-rate", "100", "--pg-breaker-open", "60s"])
    prom = prometheus_for([f"127.0.0.1:{srv.port}"])
    stop = threading.Event()
    t = threading.Thread(target=load, args=(srv, stop), daemon=True)
    t.start()
    try:
        r = hold(srv, 2, 1, 1, [1])
        assert pay(srv, 2, r.json["reservationId"]).status == 201

        # The target is up and the series arrive, labelled by route template.
        prom.wait("concertd to be up",
                  lambda: [x for x in prom.query('up{job="concertd"}') if x["value"][1] == "1"])
        res = prom.wait("request counts of the concert list", lambda: prom.query(
            'sum by (route) (rate(concertd_http_requests_total{route="/api/v1/concerts"}[10s]))'
            ' > 0'))
        assert res[0]["metric"]["route"] == "/api/v1/concerts"
        routes = {x["metric"]["route"] for x in prom.query("concertd_http_requests_total")}
        assert "/api/v1/concerts/{cid}/sessions" in routes
        assert not any(re.search(r"/\d", rt) for rt in routes), routes  # templates, not paths
        prom.wait("the payment", lambda: prom.query(
            'concertd_payments_total{method="balance",result="completed"} == 1'))
        assert prom.query('concertd_holds_total{event="confirmed"}')[0]["value"][1] == "1"
        assert prom.query("histogram_quantile(0.95, sum by (le) ("
                          "rate(concertd_http_request_duration_seconds_bucket[10s])))")

        # Every query of the dashboard is PromQL Prometheus accepts.
        d = json.loads(DASHBOARD.read_text())
        for p in d["panels"]:
            for tg in p.get("targets", []):
                if "expr" in tg:
                    prom.query(tg["expr"].replace("$instance", ".*"))

        # Every rule is loaded and evaluates without error; nothing fires
        # while all is well.
        def rules_ok():
            status, body = prom.api("rules")
            rules = [r for g in body["data"]["groups"] for r in g["rules"]]
            return rules if rules and all(r["health"] == "ok" for r in rules) else None
        rules = prom.wait("every rule to evaluate", rules_ok)
        names = {r["name"] for r in rules}
        assert {"ConcertdHigh5xxRate", "ConcertdPaymentBreakerOpen", "ConcertdLatencyP95High",
                "ConcertdWaitingRoomNotDraining", "ConcertdOutboxLag"} <= names
        quiet = alerts(prom)
        assert not {a for a in quiet if a[0] in ("ConcertdHigh5xxRate", "ConcertdDown",
                                                 "ConcertdPaymentBreakerOpen")}, quiet

        # The gateway goes down: two unknown answers open the breaker, and
        # card payments are 503 from then on.
        mockpg.faults(down=True)
        for uid, seat in ((3, 2), (4, 3)):
            r = hold(srv, uid, 1, 1, [seat])
            assert pay(srv, uid, r.json["reservationId"], method="card").status == 202
        rid = hold(srv, 5, 1, 1, [4]).json["reservationId"]

        def refused_payments():
            # People retry: 10 refused card payments per look, well over
            # 1 % of the traffic.
            for _ in range(10):
                assert pay(srv, 5, rid, method="card").status == 503
            return alerts(prom)
        prom.wait("ConcertdPaymentBreakerOpen to fire",
                  lambda: ("ConcertdPaymentBreakerOpen", "firing") in refused_payments())
        prom.wait("ConcertdHigh5xxRate to fire",
                  lambda: ("ConcertdHigh5xxRate", "firing") in refused_payments())
        assert prom.query("concertd_payment_gateway_breaker_state")[0]["value"][1] == "1"
    finally:
        stop.set()
        t.join(10)
