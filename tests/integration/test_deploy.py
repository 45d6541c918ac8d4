"""deploy/ checked as far as a machine without Docker can (issue 9):
promtool accepts the Prometheus config and the alert rules and their unit
tests pass; every metric the dashboard and the rules name is one concertd
exports (scraped from a real one that took holds and payments); the
compose file parses and its services, ports and mounted files agree with
the configs beside it; HAProxy accepts its config; the Dockerfile's
runtime stage has every library concertd links."""

import ipaddress
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from booking_util import hold, pay
from conftest import REPO_ROOT, BIN
from test_gateway import mockpg  # noqa: F401  (the fixture)
from test_metrics import scrape

DEPLOY = REPO_ROOT / "deploy"
PROM = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "concertd.json"
PROMTOOL = shutil.which("promtool")
NAME = re.compile(r"\bconcertd_[a-z0-9_]+")


def run(*cmd, cwd=None):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def alert_rules():
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def dashboard_exprs():
    d = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in d["panels"] for t in p.get("targets", []) if "expr" in t]


# ---- Prometheus config and rules --------------------------------------------


def test_promtool_accepts_the_config_and_the_rules():
    assert PROMTOOL, "promtool is missing: scripts/deps installs Debian's prometheus package"
    rc, out = run(PROMTOOL, "check", "config", "prometheus.yml", cwd=PROM)
    assert rc == 0 and "SUCCESS: 1 rule files found" in out, out
    rc, out = run(PROMTOOL, "check", "rules", "alerts.yml", cwd=PROM)
    assert rc == 0, out


def test_every_alert_has_a_passing_unit_test_and_a_runbook_entry():
    rc, out = run(PROMTOOL, "test", "rules", "alerts_test.yml", cwd=PROM)
    assert rc == 0 and "SUCCESS" in out, out
    tests = yaml.safe_load((PROM / "alerts_test.yml").read_text())["tests"]
    fired = {a["alertname"] for t in tests for a in t.get("alert_rule_test", [])
             if a.get("exp_alerts")}
    names = [r["alert"] for r in alert_rules()]
    assert {"ConcertdHigh5xxRate", "ConcertdLatencyP95High", "ConcertdPaymentBreakerOpen",
            "ConcertdWaitingRoomNotDraining", "ConcertdOutboxLag"} <= set(names)
    assert set(names) == fired, f"alerts without a test that makes them fire: {set(names) - fired}"
    runbook = (REPO_ROOT / "docs" / "operations.md").read_text()
    for r in alert_rules():
        assert f"### {r['alert']}" in runbook, f"docs/operations.md has no section {r['alert']}"
        anchor = r["annotations"]["runbook"].split("#")[1]
        assert anchor == r["alert"].lower()


def test_a_broken_rule_is_refused(tmp_path):
    """The checks above can fail: promtool refuses a rule with a typo."""
    bad = (PROM / "alerts.yml").read_text().replace("> 0.01", "> > 0.01", 1)
    (tmp_path / "alerts.yml").write_text(bad)
    rc, out = run(PROMTOOL, "check", "rules", str(tmp_path / "alerts.yml"))
    assert rc != 0, out


# ---- names: the dashboard and the rules against a real /metrics ---------------


def exported_names(text):
    """Every series name a scrape may hold: the families of the # TYPE
    lines, with _bucket, _sum and _count for histograms."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.add(name)
        if kind == "histogram":
            names |= {name + "_bucket", name + "_sum", name + "_count"}
    return names


@pytest.fixture
def busy_scrape(server, mockpg):  # noqa: F811
    """/metrics of a concertd with card payments that has taken holds,
    balance and card payments, waiting-room entries and a charge."""
    srv = server(seed=["--price", "1000", "--users", "10", "--balance", "100000"],
                 args=["--pg-url", mockpg.url])
    srv.post("/api/v1/waiting-queues", {"userId": 9}, token=None)
    r = hold(srv, 2, 1, 1, [1])
    assert pay(srv, 2, r.json["reservationId"]).status == 201
    r = hold(srv, 3, 1, 1, [2])
    assert pay(srv, 3, r.json["reservationId"], method="card").status == 201
    assert srv.post("/api/v1/users/4/balance/charge", {"amount": 5}).status == 200
    return scrape(srv)


def test_the_dashboard_and_the_rules_name_only_exported_metrics(busy_scrape):
    exported = exported_names(busy_scrape)
    families = {n for n in re.findall(r"^# TYPE (\S+) ", busy_scrape, re.M)}
    dash = {n for e in dashboard_exprs() for n in NAME.findall(e)}
    rules = {n for r in alert_rules() for n in NAME.findall(r["expr"])}
    assert dash and rules
    assert dash - exported == set(), f"the dashboard names metrics concertd does not export"
    assert rules - exported == set(), f"the alert rules name metrics concertd does not export"
    # ... and shows every family concertd exports.
    shown = {f for f in families if any(n == f or n.startswith(f + "_") for n in dash)}
    assert families - shown == set(), "families the dashboard does not show"
    for need in ("concertd_holds_total", "concertd_payments_total",
                 "concertd_payment_gateway_breaker_state", "concertd_store_commit_duration_seconds",
                 "concertd_waiting_room_waiting", "concertd_outbox_lag_seconds"):
        assert need in families


def test_the_dashboard_is_well_formed():
    d = json.loads(DASHBOARD.read_text())
    sources = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" /
                              "datasources.yml").read_text())["datasources"]
    uids = {s["uid"]: s["type"] for s in sources}
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    titles = {p["title"] for p in d["panels"] if p["type"] == "row"}
    assert {"Traffic", "Latency", "Errors", "Waiting room", "Holds and payments",
            "Store"} <= titles
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        ds = p["datasource"]
        assert uids.get(ds["uid"]) == ds["type"], f"{p['title']}: unknown datasource {ds}"
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" /
                               "dashboards.yml").read_text())["providers"][0]
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts


# ---- compose, HAProxy, Dockerfile ----------------------------------------------


def compose():
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def listen_port(cmd):
    return int(cmd[cmd.index("--listen") + 1].rsplit(":", 1)[1])


def test_compose_services_ports_and_files_agree():
    c = compose()
    svc = c["services"]
    assert {"concertd1", "concertd2", "postgres", "redis", "haproxy", "prometheus", "grafana",
            "influxdb"} <= set(svc)
    for name in ("concertd1", "concertd2"):
        cmd = svc[name]["command"]
        assert cmd[0] == "serve"
        assert cmd[cmd.index("--db") + 1].startswith("postgres://")
        assert cmd[cmd.index("--queue") + 1].startswith("redis://")
        assert "@postgres:5432/" in cmd[cmd.index("--db") + 1]
        assert cmd[cmd.index("--queue") + 1] == "redis://redis:6379"
        assert svc[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert set(svc[name]["depends_on"]) >= {"postgres", "redis"}
    # HAProxy sends traffic to both, on the port they listen on.
    cfg = (DEPLOY / "haproxy" / "haproxy.cfg").read_text()
    servers = re.findall(r"^\s*server (\S+) (\S+):(\d+)", cfg, re.M)
    assert {(h, int(p)) for _, h, p in servers} == {
        ("concertd1", listen_port(svc["concertd1"]["command"])),
        ("concertd2", listen_port(svc["concertd2"]["command"]))}
    # HAProxy names the client in X-Forwarded-For, and concertd trusts
    # HAProxy's address, and only that, for it.
    assert re.search(r"^\s*option forwardfor\b", cfg, re.M)
    haproxy_ip = svc["haproxy"]["networks"]["default"]["ipv4_address"]
    assert c["x-concertd"]["environment"]["CONCERT_TRUSTED_PROXIES"] == haproxy_ip
    subnet = c["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(haproxy_ip) in ipaddress.ip_network(subnet)
    bound = {int(p) for p in re.findall(r"^\s*bind \*:(\d+)", cfg, re.M)}
    published = {int(p.split(":")[1]) for p in svc["haproxy"]["ports"]}
    assert published == bound
    # Prometheus scrapes services that exist, on their ports.
    prom = yaml.safe_load((PROM / "prometheus.yml").read_text())
    ports = {"concertd1": 8080, "concertd2": 8080, "haproxy": 8404, "localhost": 9090}
    for job in prom["scrape_configs"]:
        for t in job["static_configs"][0]["targets"]:
            host, port = t.rsplit(":", 1)
            assert host == "localhost" or host in svc, t
            assert ports[host] == int(port), t
    # Grafana's datasources point at services that exist, on their ports.
    sources = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" /
                              "datasources.yml").read_text())["datasources"]
    for s in sources:
        host, port = re.match(r"http://([^:/]+):(\d+)", s["url"]).groups()
        assert host in svc and f"{port}:{port}" in svc[host]["ports"], s
    # Every file or folder mounted from the repository exists, and what
    # Prometheus loads is mounted beside its config.
    for name, s in svc.items():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), f"{name} mounts missing {src}"
    pm = svc["prometheus"]["volumes"]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in pm
    # mockpg answers where concertd is told the gateway is.
    mock = svc["mockpg"]["command"]
    assert c["x-concertd"]["environment"]["CONCERT_PG_URL"] == \
        f"http://mockpg:{listen_port(mock)}"


def test_haproxy_accepts_its_config():
    haproxy = shutil.which("haproxy")
    assert haproxy, "haproxy is missing: scripts/deps installs Debian's haproxy package"
    rc, out = run(haproxy, "-c", "-f", str(DEPLOY / "haproxy" / "haproxy.cfg"))
    assert rc == 0 and "Configuration file is valid" in out, out


def test_dockerfile_runs_as_non_root_with_a_healthcheck_and_every_library():
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert stages == ["debian:12-slim", "debian:12-slim"]
    runtime = text.split("\nFROM ")[-1]
    user = re.search(r"^USER (\S+)", runtime, re.M).group(1)
    assert user.split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*CMD .*/health/live", runtime, re.M)
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in src.split():
            assert (REPO_ROOT / path).exists(), f"COPY of missing {path}"
    pkgs = set(re.findall(r"\b(lib[a-z0-9.+-]+)", runtime.split("rm -rf")[0]))
    # Each library concertd needs comes from a package the runtime installs.
    needed = re.findall(r"Shared library: \[(\S+)\]",
                        subprocess.run(["readelf", "-d", str(BIN)], capture_output=True,
                                       text=True).stdout)
    ldd = subprocess.run(["ldd", str(BIN)], capture_output=True, text=True).stdout
    for lib in needed:
        if lib.startswith(("libc.so", "libm.so", "ld-linux", "libasan", "libubsan")):
            continue
        path = re.search(rf"{re.escape(lib)} => (\S+)", ldd).group(1)
        owner = None
        for p in {path, str(Path(path).resolve()), str(Path(path).resolve()).replace("/usr", "", 1)}:
            r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
            if r.returncode == 0:
                owner = r.stdout.split(":")[0]
                break
        assert owner, f"no package owns {path}"
        assert owner in pkgs, f"{lib} comes from {owner}, which the runtime stage does not install"


def test_the_build_stage_configures_from_what_it_copies(tmp_path):
    """The files the build stage COPYs are all CMake needs: configure a
    tree made of just them, as `docker build` would, and find both targets."""
    text = (DEPLOY / "Dockerfile").read_text()
    build = text.split("\nFROM ")[1]
    for line in re.findall(r"^COPY (?!--from)(.+)$", build, re.M):
        *srcs, dest = line.split()
        for src in srcs:
            p = REPO_ROOT / src
            target = tmp_path / (p.name if dest in ("./", ".") else dest.lstrip("./"))
            if p.is_dir():
                shutil.copytree(p, target)
            else:
                shutil.copy(p, target)
    rc, out = run("cmake", "--preset", "release", cwd=tmp_path)
    assert rc == 0, out
    rc, out = run("cmake", "--build", "build/release", "--target", "help", cwd=tmp_path)
    assert rc == 0 and "concertd" in out and "mockpg" in out, out
