"""A throwaway PostgreSQL cluster for the integration tests (distributed mode).

PgCluster(...).start() runs initdb into a fresh temporary directory and
starts that cluster with pg_ctl on a free loopback port (its unix socket in
the same directory), fsync on like production, trust authentication on
loopback only. stop() stops exactly that cluster (pg_ctl -D <its dir>) and
deletes the directory. Nothing else is touched: no system cluster, no
service manager.

Each test gets its own database, created from a migrated template
(CREATE DATABASE ... TEMPLATE), so tests stay independent and fast.

PgDatabase is what a test sees as `srv.db_path` in PostgreSQL mode:
booking_util.rows() runs SQL on it with psycopg2 (Debian's
python3-psycopg2) instead of sqlite3.

PostgreSQL refuses to run as root; when the tests run as root the server
runs as the `postgres` system user (created by Debian's postgresql package).
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg2

TEMPLATE = "concert_template"


def _bindir():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found: run scripts/deps")


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgDatabase:
    """One database of the cluster. str() and .url give its libpq URL."""

    def __init__(self, cluster, name):
        self.cluster, self.name = cluster, name
        self.url = cluster.url(name)
        # Databases are emptied and handed out again; state kept elsewhere
        # for a database (a Redis key prefix) keys on url + generation.
        self.generation = 0

    def __str__(self):
        return self.url

    def __repr__(self):
        return f"PgDatabase({self.url})"

    def rows(self, sql, *args):
        """Runs sql (sqlite3-style ? placeholders) and returns its rows as tuples."""
        con = psycopg2.connect(self.url)
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(sql.replace("%", "%%").replace("?", "%s"), args)
                return [tuple(r) for r in cur.fetchall()] if cur.description else []
        finally:
            con.close()


class PgCluster:
    def __init__(self, binary=None):
        self.bindir = _bindir()
        self.binary = binary  # concertd, to migrate the template
        self.dir = None
        self.port = None
        self.proc_user = None
        self.started = False
        self.n = 0
        self.free = []  # emptied databases ready for the next test

    # -- processes ---------------------------------------------------------

    def _run(self, *cmd, timeout=120, check=True):
        cmd = [os.path.join(self.bindir, cmd[0]), *cmd[1:]]
        if self.proc_user:
            cmd = ["runuser", "-u", self.proc_user, "--", *cmd]
        cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            errors="replace", timeout=timeout)
        if check and cp.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {cp.returncode}\n{cp.stdout}\n{cp.stderr}")
        return cp

    @property
    def data(self):
        return os.path.join(self.dir, "data")

    def start(self):
        """initdb (first time only) and start; returns self."""
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="concert-pg-")
            if os.geteuid() == 0:
                self.proc_user = "postgres"
                pw = pwd.getpwnam(self.proc_user)
                os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--no-locale", "--no-instructions")
            self.port = _free_port()
        self._pg_ctl_start()
        return self

    def _pg_ctl_start(self):
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
                " -c fsync=on -c synchronous_commit=on -c max_connections=300"
                " -c shared_buffers=64MB -c log_min_messages=warning")
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "server.log"),
                  "-o", opts, "-w", "-t", "60", "start")
        self.started = True

    def stop_server(self, mode="fast"):
        """Stops the server but keeps its data (fault tests start it again)."""
        if self.started:
            self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop",
                      check=False)
            self.started = False

    def restart(self):
        self.stop_server()
        self._pg_ctl_start()

    def destroy(self):
        self.stop_server()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # -- databases ---------------------------------------------------------

    def url(self, db):
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def admin(self, sql):
        con = psycopg2.connect(self.url("postgres"))
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(sql)
        finally:
            con.close()

    def migrate_template(self):
        """Creates the migrated template every test database is copied from."""
        self.admin(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        self.admin(f"CREATE DATABASE {TEMPLATE}")
        cp = subprocess.run([str(self.binary), "migrate", "--db", self.url(TEMPLATE)],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items()
                                 if not k.startswith("CONCERT_")})
        if cp.returncode != 0:
            raise RuntimeError(f"concertd migrate failed:\n{cp.stdout}\n{cp.stderr}")

    def new_database(self):
        """A fresh database with the schema and no rows: one given back
        earlier (emptied) or a new copy of the template."""
        if self.free:
            db = self.free.pop()
            db.generation += 1
            return db
        self.n += 1
        name = f"t{os.getpid()}_{self.n}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return PgDatabase(self, name)

    def drop_database(self, db):
        """Gives db back once its servers are gone: emptied (every table
        truncated, identities restarted) for the next test, which is ten
        times faster than CREATE DATABASE; dropped when that fails."""
        if not self.started:
            return
        try:
            con = psycopg2.connect(db.url)
            try:
                con.autocommit = True
                with con.cursor() as cur:
                    cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                " WHERE datname = current_database() AND pid <> pg_backend_pid()")
                    cur.execute("SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables"
                                " WHERE schemaname = 'public' AND tablename <> 'schema_version'")
                    tables = cur.fetchone()[0]
                    cur.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
            finally:
                con.close()
            self.free.append(db)
        except psycopg2.Error:
            try:
                self.admin(f"DROP DATABASE IF EXISTS {db.name} WITH (FORCE)")
            except psycopg2.Error:
                pass

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.admin("SELECT 1")
                return
            except psycopg2.Error:
                time.sleep(0.1)
        raise RuntimeError("PostgreSQL did not come back")
