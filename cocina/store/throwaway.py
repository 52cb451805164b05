"""A throwaway PostgreSQL server on 127.0.0.1 for tests, benchmarks and trying `--store postgresql://` locally.

`initdb` and `pg_ctl` refuse to run as root, so as root they run as the `postgres` user (`runuser`), with a data
directory that user owns; as anyone else they run as that user. The server listens on 127.0.0.1 only (and on a
Unix socket in its own directory), trusts local connections, and is removed with its directory on `stop()`.

    with ThrowawayPostgres() as pg:          # initdb + start: about half a second
        url = pg.url                        # postgresql://cocina@127.0.0.1:PORT/cocina
        pg.restart()                        # stop and start again on the same port (the fault tests)
    python -m cocina.store.throwaway        # start one, print its URL, stop on Ctrl-C
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

_SERVER_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries here, or no user to run them as."""


def _find_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    # Debian keeps the server binaries out of PATH.
    for version_dir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (version_dir / name).exists():
            return str(version_dir / name)
    raise PostgresUnavailable(f"{name} not found: install PostgreSQL (Debian: apt-get install postgresql)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayPostgres:
    """A PostgreSQL server in a temporary directory. `start()` / `stop()`, or use it as a context manager.

    `settings` are extra `-c name=value` server settings; by default durability is PostgreSQL's own (fsync on),
    so that benchmarks measure what a real server does; tests pass `fast=True` (fsync off)."""

    def __init__(self, *, port: int | None = None, fast: bool = False, settings: dict[str, str] | None = None) -> None:
        self.port = port or _free_port()
        self.fast = fast
        self.settings = dict(settings or {})
        self.dir: Path | None = None
        self._as_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://cocina@127.0.0.1:{self.port}/cocina"

    @property
    def data_dir(self) -> Path:
        assert self.dir is not None, "not started"
        return self.dir / "data"

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._as_root:
            cmd = ["runuser", "-u", _SERVER_USER, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd="/")

    def start(self) -> ThrowawayPostgres:
        initdb = _find_bin("initdb")
        self.dir = Path(tempfile.mkdtemp(prefix="cocina-pg-"))
        if self._as_root:
            try:
                user = pwd.getpwnam(_SERVER_USER)
            except KeyError as exc:
                raise PostgresUnavailable(f"running as root needs a `{_SERVER_USER}` user to run PostgreSQL") from exc
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        done = self._run(initdb, "-D", str(self.data_dir), "-A", "trust", "-U", "cocina", "--no-sync", "-E", "UTF8")
        if done.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        self._start_server()
        created = subprocess.run(
            [shutil.which("psql") or _find_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "cocina",
             "-d", "postgres", "-q", "-c", "CREATE DATABASE cocina"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if created.returncode != 0:
            raise PostgresUnavailable(f"could not create the database: {created.stderr.strip()}")
        return self

    def _start_server(self) -> None:
        assert self.dir is not None
        options = {"listen_addresses": "127.0.0.1", "port": str(self.port), "unix_socket_directories": str(self.dir)}
        if self.fast:
            options.update({"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"})
        options.update(self.settings)
        opts = " ".join(f"-c {k}={v}" for k, v in options.items())
        done = self._run(
            _find_bin("pg_ctl"), "-D", str(self.data_dir), "-o", opts, "-l", str(self.dir / "log"), "-w", "start"
        )
        if done.returncode != 0:
            log = (self.dir / "log").read_text(errors="replace")[-2000:] if (self.dir / "log").exists() else ""
            raise PostgresUnavailable(f"pg_ctl start failed: {done.stderr.strip()}\n{log}")

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data (`start_server()` brings it back on the same port)."""
        self._run(_find_bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def start_server(self) -> None:
        self._start_server()

    def restart(self, down_s: float = 0.0) -> None:
        """Stop (fast: connections are cut) and start again after `down_s` seconds."""
        self.stop_server()
        time.sleep(down_s)
        self._start_server()

    def create_database(self, name: str) -> str:
        """A new empty database on this server; its URL."""
        done = subprocess.run(
            [shutil.which("psql") or _find_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "cocina",
             "-d", "cocina", "-q", "-c", f'CREATE DATABASE "{name}"'],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise PostgresUnavailable(f"could not create database {name}: {done.stderr.strip()}")
        return f"postgresql://cocina@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        if self.dir is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            self._run(_find_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main() -> None:
    """Start a throwaway server, print its URL, and stop it on Ctrl-C or SIGTERM."""
    pg = ThrowawayPostgres().start()
    print(pg.url, flush=True)
    stopped = False

    def stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopped:
            time.sleep(0.2)
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
