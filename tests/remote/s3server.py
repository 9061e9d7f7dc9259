"""A real S3-compatible HTTP server for the remote tests: moto's standalone server, started in its
own process on 127.0.0.1 (one per test session), plus TCP helpers that make a server stop
answering.

Test modules import this file directly (tests/remote is put on sys.path by pytest's default
import mode); the server is a process-wide singleton so that every module shares it.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from typing import Any

REGION = "us-east-1"
KEY = SECRET = "testing"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def storage_options(endpoint: str) -> dict[str, Any]:
    """fsspec (s3fs) options for an S3-compatible server at `endpoint`."""
    return {"key": KEY, "secret": SECRET, "client_kwargs": {"endpoint_url": endpoint, "region_name": REGION}}


class S3Server:
    """moto's S3 server in a child process."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.endpoint = ""
        for _ in range(5):  # the free port may be taken between the check and the bind
            port = free_port()
            env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
            proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            endpoint = f"http://127.0.0.1:{port}"
            if _wait_http(endpoint, proc, 600.0):  # a generous bound (a loaded machine), not a pace
                self.proc, self.endpoint = proc, endpoint
                break
            proc.kill()
            proc.wait()
        if self.proc is None:
            raise RuntimeError("could not start moto's S3 server (python -m moto.server); is moto[server] installed?")

    @property
    def storage_options(self) -> dict[str, Any]:
        return storage_options(self.endpoint)

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=KEY,
                            aws_secret_access_key=SECRET)

    def new_bucket(self, prefix: str = "test") -> str:
        """A new, empty bucket with a unique name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # SIGKILL: moto's SIGTERM handler waits for open request threads; nothing to save.
            self.proc.kill()
            self.proc.wait()


def _wait_http(endpoint: str, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            urllib.request.urlopen(endpoint, timeout=30.0).close()
            return True
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    return False


_SERVER: S3Server | None = None
_SERVER_LOCK = threading.Lock()


def get_server() -> S3Server:
    """The session's S3 server (started on first use, stopped at exit)."""
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is None:
            _SERVER = S3Server()
            atexit.register(_SERVER.stop)
        return _SERVER


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._conns: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)  # kept open, never read from or written to

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        for conn in self._conns:
            conn.close()


class Proxy:
    """A TCP proxy to `upstream` (host, port) that can stop answering: with ``silent`` set, new
    and existing connections stay open but nothing is forwarded any more."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.silent = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._closed = False
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    break
                if self.silent.is_set():
                    continue  # swallowed: the server has stopped answering
                dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        for conn in self._conns:
            try:
                conn.close()
            except OSError:
                pass
