"""A throwaway redis-server for the tests, and a minimal RESP client
(standard library only). Used by the Redis event sink tests, the Redis
waiting-room tests and conftest.py's CONCERT_TEST_QUEUE=redis mode.

    r = RedisServer(tmp_path / "redis").start()   # free loopback port, no persistence
    r.cmd("ZCARD", "concertd:wr:line")
    r.kill()                                      # SIGKILL by PID; r.start() again: same port
"""

import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import free_port

REDIS_BIN = shutil.which("redis-server") or "/usr/bin/redis-server"


def _read_reply(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode()
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise RuntimeError(f"unexpected RESP reply {line!r}")


def redis_cmd(port, *args, timeout=5.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        out = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = str(a).encode()
            out.append(f"${len(b)}\r\n".encode() + b + b"\r\n")
        s.sendall(b"".join(out))
        with s.makefile("rb") as f:
            return _read_reply(f)


def require_redis():
    if not shutil.which(REDIS_BIN):
        pytest.fail("redis-server not installed: run scripts/deps", pytrace=False)


class RedisServer:
    """redis-server on 127.0.0.1:port, no persistence, started and stopped by PID."""

    def __init__(self, workdir, port=None):
        self.workdir = workdir
        self.port = port or free_port()
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        require_redis()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.workdir / f"redis.{self.port}.log", "ab")
        self.proc = subprocess.Popen(
            [REDIS_BIN, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server exited with {self.proc.returncode}", pytrace=False)
            try:
                if redis_cmd(self.port, "PING", timeout=1.0) == "PONG":
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        pytest.fail("redis-server did not answer PING within 10 s", pytrace=False)

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        if self.proc:
            self.log.close()
        self.proc = None

    def cmd(self, *args, timeout=5.0):
        return redis_cmd(self.port, *args, timeout=timeout)
