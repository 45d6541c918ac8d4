"""Integration test harness: start a real concertd on a free port.

Modelled on Redis's `start_server {}` blocks and lwan's testsuite.py: every
test talks real HTTP (http.client or raw sockets) to a real `concertd serve`
process backed by a throwaway SQLite file seeded with `concertd seed`.

    def test_x(server):
        srv = server()                       # default demo seed
        status, headers, body = srv.get("/api/v1/concerts")

    def test_y(server):
        srv = server(seed=["--price", "5000"], args=["--max-body", "1024"],
                     env={"CONCERT_WORKERS": "2"})

Store: `--store pg` (or CONCERTD_TEST_STORE=pg) runs every server of the
suite on a throwaway PostgreSQL cluster (pgcluster.py) instead of SQLite:
each factory server gets a fresh database and srv.db_path is then a
pgcluster.PgDatabase (booking_util.rows() queries either).

Environment:
    CONCERTD_BIN        the binary (default <repo>/build/release/concertd)
    CONCERTD_LOG_LEVEL  --log-level passed to serve (default warn)
    CONCERT_TEST_QUEUE  local (default) or redis: with redis, one redis-server
                        is started for the session and every server the
                        factory makes (and its seed) uses --queue redis://
                        with a key prefix of its own per database file, so
                        a restart on the same file finds its waiting room

Teardown sends SIGTERM and fails the test if the server did not exit 0 within
10 s, died from a signal, or printed a sanitizer report. Only the Python
standard library and pytest are used.
"""

import hashlib
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("CONCERTD_BIN", REPO_ROOT / "build" / "release" / "concertd"))
LOG_LEVEL = os.environ.get("CONCERTD_LOG_LEVEL", "warn")

JSON_CT = "application/json; charset=utf-8"
START_TIMEOUT = 10.0  # seconds until /health/live must answer
STOP_TIMEOUT = 15.0   # seconds the server may take to exit on SIGTERM (grace is 10 s)
CLI_TIMEOUT = 60.0    # seconds any CLI command (seed, import, ...) may take
HTTP_TIMEOUT = 10.0   # per-socket timeout of every request the helpers make

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "ThreadSanitizer", "AddressSanitizer:DEADLYSIGNAL")


# ---------------------------------------------------------------------------
# CLI


def require_binary():
    if not BIN.is_file() or not os.access(BIN, os.X_OK):
        pytest.fail(f"concertd binary not found at {BIN}: build it "
                    f"(cmake --preset release && cmake --build build/release) "
                    f"or set CONCERTD_BIN", pytrace=False)
    return BIN


def run_cli(*args, env=None, timeout=CLI_TIMEOUT, check=False):
    """Runs concertd with args; returns CompletedProcess (text stdout/stderr).

    env entries are added to (or, with value None, removed from) a copy of the
    environment from which every CONCERT_* variable has been removed."""
    require_binary()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CONCERT_")}
    for k, v in (env or {}).items():
        if v is None:
            full_env.pop(k, None)
        else:
            full_env[k] = v
    cp = subprocess.run([str(BIN), *map(str, args)], env=full_env, stdin=subprocess.DEVNULL,
                        capture_output=True, text=True, errors="replace", timeout=timeout)
    if check and cp.returncode != 0:
        pytest.fail(f"concertd {' '.join(map(str, args))} exited {cp.returncode}\n"
                    f"stdout:\n{cp.stdout}\nstderr:\n{cp.stderr}", pytrace=False)
    assert_no_sanitizer_report(cp.stderr, f"concertd {' '.join(map(str, args))}")
    return cp


def assert_no_sanitizer_report(text, what):
    for m in SANITIZER_MARKERS:
        if m in text:
            pytest.fail(f"{what}: sanitizer report in stderr:\n{text[-8000:]}", pytrace=False)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# HTTP helpers


class Response:
    """status, headers (case-insensitive http.client.HTTPMessage), body
    (parsed JSON when the body parses as JSON, else raw bytes), raw bytes.

    Unpacks as (status, headers, body)."""

    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        self.json = None
        try:
            self.json = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError):
            self.json = None
        self.body = self.json if self.json is not None else raw

    def __iter__(self):
        return iter((self.status, self.headers, self.body))

    def __repr__(self):
        return f"<Response {self.status} {dict(self.headers or {})} {self.raw[:500]!r}>"


def http_request(host, port, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        elif isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        raw = r.read()
        return Response(r.status, r.headers, raw)
    finally:
        conn.close()


def assert_json_ct(resp):
    ct = resp.headers.get("Content-Type") if resp.headers is not None else None
    assert ct is not None and ct.replace(" ", "").lower() == JSON_CT.replace(" ", ""), \
        f"Content-Type {ct!r}, want {JSON_CT!r}: {resp!r}"


def assert_error(resp, status, code, mentions=None):
    """Asserts a JSON error {"error":{"code","message"}} with that status and
    code, whose message mentions every entry of `mentions` (case-insensitive;
    an entry that is a tuple is satisfied by any one of its strings)."""
    assert resp.status == status, f"want {status} {code}, got {resp!r}"
    assert_json_ct(resp)
    body = resp.json
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), \
        f"error body is not {{\"error\":{{...}}}}: {resp!r}"
    assert body["error"].get("code") == code, f"want code {code}: {resp!r}"
    msg = body["error"].get("message")
    assert isinstance(msg, str) and msg.strip(), f"empty error message: {resp!r}"
    if isinstance(mentions, str):
        mentions = [mentions]
    for m in mentions or ():
        alts = (m,) if isinstance(m, str) else tuple(m)  # a tuple: any one of them
        assert any(a.lower() in msg.lower() for a in alts), \
            f"error message {msg!r} mentions none of {alts!r}"
    return body["error"]


def assert_ok_json(resp, status=200):
    assert resp.status == status, f"want {status}, got {resp!r}"
    assert_json_ct(resp)
    assert resp.json is not None, f"body is not JSON: {resp!r}"
    return resp.json


# ---------------------------------------------------------------------------
# Raw sockets: for framing the http.client module refuses to produce.


def connect(port, timeout=HTTP_TIMEOUT):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s


class RawResponse:
    def __init__(self, status, reason, headers, body, version):
        self.status = status
        self.reason = reason
        self.headers = headers  # dict, lower-case names
        self.body = body
        self.version = version
        try:
            self.json = json.loads(body.decode("utf-8")) if body else None
        except (UnicodeDecodeError, ValueError):
            self.json = None

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def __repr__(self):
        return f"<RawResponse {self.status} {self.headers} {self.body[:500]!r}>"


class Closed(Exception):
    """The peer closed (or reset) the connection before a full response."""

    def __init__(self, partial=b""):
        super().__init__(f"connection closed; partial data {partial[:300]!r}")
        self.partial = partial


def _recv(sock, n=65536):
    try:
        return sock.recv(n)
    except (ConnectionResetError, BrokenPipeError):
        return b""


def read_response(sock, buf=b"", head_request=False):
    """Reads one HTTP/1.x response from sock (socket timeout applies to each
    recv). Returns (RawResponse, leftover bytes). Raises Closed when the peer
    closes first, socket.timeout when it goes quiet."""
    while b"\r\n\r\n" not in buf:
        d = _recv(sock)
        if not d:
            raise Closed(buf)
        buf += d
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"(HTTP/\d\.\d) (\d{3}) ?(.*)", lines[0])
    if not m:
        raise AssertionError(f"bad status line {lines[0]!r}")
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    status = int(m.group(2))
    body = b""
    if head_request or status in (204, 304) or 100 <= status < 200:
        pass
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            while b"\r\n" not in buf:
                d = _recv(sock)
                if not d:
                    raise Closed(buf)
                buf += d
            size_line, buf = buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                d = _recv(sock)
                if not d:
                    raise Closed(buf)
                buf += d
            if size == 0:
                # skip trailers
                while not (buf.startswith(b"\r\n") or b"\r\n\r\n" in buf):
                    d = _recv(sock)
                    if not d:
                        break
                    buf += d
                buf = buf[2:] if buf.startswith(b"\r\n") else buf.split(b"\r\n\r\n", 1)[1]
                break
            body += buf[:size]
            buf = buf[size + 2:]
    elif "content-length" in headers:
        n = int(headers["content-length"])
        while len(buf) < n:
            d = _recv(sock)
            if not d:
                raise Closed(buf)
            buf += d
        body, buf = buf[:n], buf[n:]
    else:
        while True:
            d = _recv(sock)
            if not d:
                break
            buf += d
        body, buf = buf, b""
    return RawResponse(status, m.group(3), headers, body, m.group(1)), buf


def raw_exchange(port, data, timeout=5.0):
    """Sends raw bytes on a fresh connection and reads one response.
    Returns a RawResponse, or None when the server closed without answering
    (or stayed silent for `timeout` seconds; see raw_exchange_status)."""
    with connect(port, timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            return read_response(s)[0]
        except Closed:
            return None


def wait_readable(sock, timeout):
    r, _, _ = select.select([sock], [], [], timeout)
    return bool(r)


# ---------------------------------------------------------------------------
# The server


DEFAULT = object()  # "argument not given", where None means something
TOKEN_PATTERN = "queue_token_{n}"
TOKEN_USERS = 50  # users 1..50 get an ACTIVATED token in servers the factory makes


def active_token(user_id):
    """The ACTIVATED waiting-room token the factory pre-issues to user_id."""
    return TOKEN_PATTERN.replace("{n}", str(user_id))


def token_seed_args(seed):
    """Seed arguments that also pre-issue tokens: to --users N when given
    (all of them), else to users 1..TOKEN_USERS."""
    seed = list(seed)
    if "--users" not in seed:
        return seed + ["--users", str(TOKEN_USERS), "--active-tokens", TOKEN_PATTERN]
    if int(seed[seed.index("--users") + 1]) == 0:
        return seed
    return seed + ["--active-tokens", TOKEN_PATTERN]


def thread_dump(pid):
    """Every thread's stack of a hung process, when gdb is installed."""
    gdb = shutil.which("gdb")
    if not gdb:
        return "(gdb not installed: no thread dump)"
    try:
        r = subprocess.run([gdb, "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           errors="replace", timeout=30)
        return r.stdout[-8000:]
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"(gdb failed: {e})"


def db_url(db):
    """The --db URL of a database: a SQLite file path or a pgcluster.PgDatabase."""
    return db.url if hasattr(db, "url") else f"sqlite:{db}"


class Server:
    def __init__(self, workdir, db_path, args, env):
        self.workdir = Path(workdir)
        self.db_path = db_path if hasattr(db_path, "url") else Path(db_path)
        self.db_url = db_url(self.db_path)
        self.args = list(args)
        self.env = dict(env or {})
        self.proc = None
        self.port = None
        self.host = "127.0.0.1"
        self.url = None
        self.stderr_path = None
        self.stdout_path = None
        self.expect_clean_exit = True  # teardown: SIGTERM must give exit 0
        self.allowed_signals = set()   # deaths by these signals are not crashes
        self.hang_report = ""
        self.token = active_token(1)  # sent by request() unless told otherwise

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        last = ""
        for attempt in range(5):
            self.port = free_port()
            self.url = f"http://{self.host}:{self.port}"
            self.stderr_path = self.workdir / f"concertd.{self.port}.stderr"
            self.stdout_path = self.workdir / f"concertd.{self.port}.stdout"
            cmd = [str(BIN), "serve", "--listen", f"{self.host}:{self.port}",
                   "--db", self.db_url, "--log-level", LOG_LEVEL, *map(str, self.args)]
            env = {k: v for k, v in os.environ.items() if not k.startswith("CONCERT_")}
            env.update(self.env)
            with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
                self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                             stdout=out, stderr=err)
            self.cmd = cmd
            if self._wait_live():
                return self
            last = self.stderr_text()
            if self.proc.poll() is not None and re.search(r"in use|EADDRINUSE|bind", last, re.I):
                continue  # port taken between free_port() and bind: retry
            break
        rc = self.proc.poll()
        if rc is None:
            self.proc.kill()
            self.proc.wait(5)
        self.expect_clean_exit = False
        why = (f"exited with code {rc} before answering /health/live" if rc is not None
               else f"did not answer /health/live within {START_TIMEOUT}s")
        pytest.fail(f"concertd {why}; cmd: {' '.join(self.cmd)}\nstderr:\n{last}", pytrace=False)

    def _wait_live(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                r = http_request(self.host, self.port, "GET", "/health/live", timeout=1.0)
                if r.status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, wait; returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.hang_report = thread_dump(self.proc.pid)
                self.proc.kill()
                self.proc.wait(5)
                return None
        return self.proc.returncode

    def check_teardown(self):
        """Stops the server and reports everything a user would call a crash."""
        if self.proc is None:
            return
        running = self.proc.poll() is None
        rc = self.stop()
        err = self.stderr_text()
        assert_no_sanitizer_report(err, "concertd serve")
        if rc is None:
            pytest.fail(f"concertd did not exit within {STOP_TIMEOUT}s of SIGTERM (killed)\n"
                        f"stderr tail:\n{err[-4000:]}\nthreads:\n{self.hang_report}",
                        pytrace=False)
        if rc < 0 and -rc not in self.allowed_signals:
            pytest.fail(f"concertd died from signal {-rc}\nstderr tail:\n{err[-4000:]}",
                        pytrace=False)
        if self.expect_clean_exit and rc > 0:
            how = "on SIGTERM" if running else "on its own"
            pytest.fail(f"concertd exited {rc} {how}, want 0\nstderr tail:\n{err[-4000:]}",
                        pytrace=False)

    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except (OSError, AttributeError):
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # -- HTTP --------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT, token=DEFAULT):
        """Sends QUEUE-TOKEN: self.token (an ACTIVATED token of user 1 that
        the factory seeds) unless headers has one or token= says otherwise
        (token=None sends none)."""
        token = self.token if token is DEFAULT else token
        headers = dict(headers or {})
        if token is not None and not any(k.lower() == "queue-token" for k in headers):
            headers["QUEUE-TOKEN"] = token
        return http_request(self.host, self.port, method, path, body, headers, timeout)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def connect(self, timeout=HTTP_TIMEOUT):
        return connect(self.port, timeout)

    def raw(self, data, timeout=5.0):
        return raw_exchange(self.port, data, timeout)

    def assert_live(self, what=""):
        """The process is running and answers /health/live with 200."""
        assert self.alive(), f"concertd exited ({self.proc.returncode}) {what}\n" \
                             f"stderr:\n{self.stderr_text()[-4000:]}"
        r = self.get("/health/live", timeout=5.0)
        assert r.status == 200 and r.json == {"status": "ok"}, f"/health/live {what}: {r!r}"


PG_CLUSTER = None  # with --store pg: the session's PgCluster (fixture pg_store_backend)


QUEUE_MODE = os.environ.get("CONCERT_TEST_QUEUE", "local")
if QUEUE_MODE not in ("local", "redis"):
    raise RuntimeError(f"CONCERT_TEST_QUEUE={QUEUE_MODE!r}: want local or redis")
_session_redis = None  # the redis-server of CONCERT_TEST_QUEUE=redis, started on first use


def queue_env(db):
    """Environment that points seed and serve at the session's waiting room
    for database file db: {} in local mode."""
    global _session_redis
    if QUEUE_MODE != "redis":
        return {}
    if _session_redis is None:
        from redis_util import RedisServer  # imports this module: not at the top
        import tempfile
        _session_redis = RedisServer(Path(tempfile.mkdtemp(prefix="concert-redis-"))).start()
    # a PG database (emptied and reused: its generation tells the uses apart) or a file
    key = f"{db.url}#{db.generation}" if hasattr(db, "url") else str(Path(db).resolve())
    prefix = "t" + hashlib.sha1(key.encode()).hexdigest()[:12] + ":"
    return {"CONCERT_QUEUE": _session_redis.url, "CONCERT_QUEUE_PREFIX": prefix}


def pytest_sessionfinish(session, exitstatus):
    if _session_redis is not None:
        _session_redis.kill(signal.SIGTERM)
        shutil.rmtree(_session_redis.workdir, ignore_errors=True)


class ServerFactory:
    def __init__(self, tmp_dir, pg=DEFAULT):
        self.tmp_dir = Path(tmp_dir)
        self.servers = []
        self.n = 0
        # a started pgcluster.PgCluster: new databases are made there
        self.pg = PG_CLUSTER if pg is DEFAULT else pg
        self.databases = []

    def new_db(self, workdir):
        """A fresh database: a SQLite file path, or a new PostgreSQL database."""
        if self.pg is None:
            return workdir / "concert.db"
        db = self.pg.new_database()
        self.databases.append(db)
        return db

    def __call__(self, seed=(), args=(), env=None, db_path=None, do_seed=True, tokens=True):
        """Seeds a fresh DB (`concertd seed` + seed args; skipped when
        do_seed=False or seed is None) and starts `concertd serve` + args.
        tokens: pre-issue ACTIVATED tokens (see token_seed_args), also when
        not seeding (a seed of users and tokens only)."""
        require_binary()
        self.n += 1
        workdir = self.tmp_dir / f"srv{self.n}"
        workdir.mkdir(parents=True, exist_ok=True)
        if db_path is None:
            db = self.new_db(workdir)
        else:
            db = db_path if hasattr(db_path, "url") else Path(db_path)
        qenv = queue_env(db)
        if do_seed and seed is not None:
            run_cli("seed", "--db", db_url(db), *(token_seed_args(seed) if tokens else seed),
                    env=qenv, check=True)
        elif tokens:
            run_cli("seed", "--db", db_url(db), "--concerts", "0",
                    *token_seed_args([]), env=qenv, check=True)
        srv = Server(workdir, db, args, {**qenv, **(env or {})})
        self.servers.append(srv)
        return srv.start()

    def teardown(self):
        errors = []
        for srv in self.servers:
            try:
                srv.check_teardown()
            except BaseException as e:  # report every server, not just the first
                errors.append(e)
        for db in self.databases:
            self.pg.drop_database(db)
        if errors:
            raise errors[0]


def store_mode(config):
    return config.getoption("--store")


@pytest.fixture(scope="session")
def pg_cluster(request):
    """The session's throwaway PostgreSQL cluster (pgcluster.py), migrated
    template included; stopped and deleted at the end."""
    from pgcluster import PgCluster
    cluster = PgCluster(require_binary())
    try:
        cluster.start()
        cluster.migrate_template()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session", autouse=True)
def pg_store_backend(request):
    """With --store pg, every ServerFactory makes its databases in the
    session's cluster (see the module docstring)."""
    global PG_CLUSTER
    if store_mode(request.config) == "pg":
        PG_CLUSTER = request.getfixturevalue("pg_cluster")
    yield
    PG_CLUSTER = None


@pytest.fixture
def server(tmp_path):
    """Factory: server(seed=[...], args=[...], env={...}) -> started Server."""
    f = ServerFactory(tmp_path)
    yield f
    f.teardown()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One server with the default demo seed (3 concerts x 4 sessions x 50
    seats) shared by a module's read-only tests."""
    f = ServerFactory(tmp_path_factory.mktemp("shared"))
    srv = f()
    yield srv
    f.teardown()


def pytest_addoption(parser):
    parser.addoption("--store", choices=("sqlite", "pg"),
                     default=os.environ.get("CONCERTD_TEST_STORE", "sqlite"),
                     help="backend of the servers the factory starts (default sqlite)")


@pytest.fixture
def cli():
    return run_cli


def pytest_configure(config):
    for name, doc in (("slow", "takes more than a few seconds"),
                      ("distributed", "needs PostgreSQL or Redis"),
                      ("fault", "crash or fault injection")):
        config.addinivalue_line("markers", f"{name}: {doc}")
