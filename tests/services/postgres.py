"""A real PostgreSQL 16 on 127.0.0.1 from pgserver's wheel, with a password-protected database.

    server = PostgresServer.start(tmp_path / "postgres")
    server.url  # postgresql://dagster:...@127.0.0.1:PORT/dagster
    server.create_database("other")  # its URL
    server.stop()

Only TCP on 127.0.0.1 (no Unix socket); durability settings are off, for speed.

PostgreSQL refuses to run as root. As root, the server runs as an existing unprivileged user:
Debian's `postgres` when installed, else `pgserver` (the user pgserver creates for itself), else
`nobody`; no user is created and no permission is changed. That user cannot reach a pytest tmp
dir: pytest keeps `/tmp/pytest-of-root` at mode 0700, and puts it back to 0700 whenever a pytest
session starts, even while a server runs (which then cannot write its own files). So as root the
cluster lives in a private folder of that user under the system temp folder
(`batch-assets-postgres-*`), removed by `stop()`, and by the next start if a killed process left
it behind; its log stays in the given folder. As any other user the cluster is in the given folder.
Where that user cannot reach pgserver's binaries either (a clone inside a folder of mode 0700, as
`mktemp -d` makes), they are copied into the private folder first (34 MB).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from tests.services import die_with_parent, free_port, read_log, stop_process, wait_until

UNPRIVILEGED_USERS = ("postgres", "pgserver", "nobody")
PRIVATE_PREFIX = "batch-assets-postgres-"
STALE_AFTER_SECONDS = 3600.0
READY_TIMEOUT_SECONDS = 60.0
START_ATTEMPTS = 3
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "logging_collector": "off",
}


def bin_dir() -> Path:
    """The PostgreSQL binaries inside the pgserver wheel."""
    found = importlib.util.find_spec("pgserver")
    if found is None or not found.submodule_search_locations:
        raise RuntimeError("pgserver is not installed; `make test` installs it with the dev extra")
    folder = Path(next(iter(found.submodule_search_locations))) / "pginstall" / "bin"
    if not (folder / "postgres").exists():
        raise RuntimeError(f"pgserver has no PostgreSQL binaries at {folder}")
    return folder


def server_user() -> pwd.struct_passwd | None:
    """The user to run PostgreSQL as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in UNPRIVILEGED_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError(f"running as root and none of the users {UNPRIVILEGED_USERS} exists")


def _others_can_reach(path: Path) -> bool:
    """Whether a user with no rights of its own can traverse every folder down to `path`."""
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in path.resolve().parents)


def _remove_stale_private_folders(parent: Path) -> None:
    """Private folders over an hour old whose server is gone: left by a killed test process."""
    for folder in parent.glob(f"{PRIVATE_PREFIX}*"):
        try:
            if time.time() - folder.stat().st_mtime < STALE_AFTER_SECONDS:
                continue
            pid_file = folder / "data" / "postmaster.pid"
            if pid_file.exists():
                os.kill(int(pid_file.read_text().split()[0]), 0)
                continue  # still running
        except ProcessLookupError:
            pass
        except (OSError, ValueError, IndexError):
            continue
        shutil.rmtree(folder, ignore_errors=True)


def _private_parent(user: pwd.struct_passwd) -> Path:
    """A new folder owned by `user`, under a temp folder every user can traverse."""
    for candidate in (Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp")):
        if candidate.is_dir() and _others_can_reach(candidate / "x"):
            _remove_stale_private_folders(candidate)
            folder = Path(tempfile.mkdtemp(prefix=PRIVATE_PREFIX, dir=candidate))
            os.chown(folder, user.pw_uid, user.pw_gid)
            return folder
    raise RuntimeError("no temp folder that an unprivileged user can reach")


def _reachable_copy(binaries: Path, folder: Path) -> Path:
    """pgserver's binaries copied into `folder`, with the shared libraries they load by a path
    relative to themselves (`$ORIGIN/../../../pgserver.libs`): the copied `bin` folder."""
    site = binaries.parents[2]  # site-packages, above pgserver/pginstall/bin
    for part in (binaries.parent.relative_to(site), Path("pgserver.libs")):
        if (site / part).exists():
            shutil.copytree(site / part, folder / "site" / part, symlinks=True)
    return folder / "site" / binaries.relative_to(site)


@dataclass
class PostgresServer:
    """A running `postgres` child process listening on 127.0.0.1:`port`."""

    root: Path
    port: int
    user: str = "dagster"
    password: str = ""
    database: str = "dagster"
    process: subprocess.Popen[bytes] | None = None
    run_as: pwd.struct_passwd | None = None
    private_parent: Path | None = None
    binaries: Path = field(default_factory=bin_dir)
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.root / "postgres.log"

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory (removed by `stop`)."""
        return (self.private_parent or self.root) / "data"

    @property
    def url(self) -> str:
        """`postgresql://user:password@127.0.0.1:PORT/database`, for dagster-postgres."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """The URL of another database on this server."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, database: str) -> str:
        """Create an empty database (a test's own) and return its URL."""
        admin = self.connect("postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{database}"')
        admin.close()
        return self.url_for(database)

    def connect(self, database: str | None = None) -> Any:
        """A psycopg2 connection over TCP."""
        return psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.database,
            connect_timeout=5,
        )

    def query(self, sql: str, params: Any = None) -> list[tuple]:
        """Run one statement in its own connection and return its rows (none for no result)."""
        with self.connect() as connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall() if cursor.description is not None else []
        connection.close()
        return rows

    def log(self) -> str:
        """What the server wrote to its log."""
        return read_log(self.log_path)

    @classmethod
    def start(
        cls, root: Path, *, user: str = "dagster", database: str = "dagster"
    ) -> PostgresServer:
        """initdb a fresh cluster, start it on a free port, create `database`."""
        root.mkdir(parents=True, exist_ok=True)
        server = cls(root=root, port=0, user=user, password=secrets.token_hex(8), database=database)
        server.run_as = server_user()
        try:
            if server.run_as is not None:
                server.private_parent = _private_parent(server.run_as)
                if not _others_can_reach(server.binaries / "postgres"):
                    server.binaries = _reachable_copy(server.binaries, server.private_parent)
            server._initdb()
            for attempt in range(START_ATTEMPTS):
                server.port = free_port()
                try:
                    server._start_postmaster()
                    break
                except RuntimeError:
                    # Another process may have taken the port between our probe and the bind.
                    stop_process(server.process, signal.SIGKILL)
                    if attempt == START_ATTEMPTS - 1:
                        raise
            server.create_database(database)
        except BaseException:
            server.stop()
            raise
        return server

    def _run_as_kwargs(self) -> dict[str, Any]:
        if self.run_as is None:
            return {}
        return {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid, "extra_groups": []}

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}

    def _initdb(self) -> None:
        self.data_dir.mkdir(mode=0o700)
        password_file = self.data_dir.parent / "password"
        password_file.write_text(self.password + "\n")
        password_file.chmod(0o600)
        if self.run_as is not None:
            os.chown(self.data_dir, self.run_as.pw_uid, self.run_as.pw_gid)
            os.chown(password_file, self.run_as.pw_uid, self.run_as.pw_gid)
        command = [
            str(self.binaries / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            f"--pwfile={password_file}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]
        with self.log_path.open("ab") as log:
            result = subprocess.run(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=self._env(),
                check=False,
                **self._run_as_kwargs(),
            )
        password_file.unlink()
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed with {result.returncode}:\n{self.log()}")

    def _start_postmaster(self) -> None:
        command = [str(self.binaries / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        for name, value in SERVER_SETTINGS.items():
            command += ["-c", f"{name}={value}"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=self._env(),
                preexec_fn=die_with_parent,
                **self._run_as_kwargs(),
            )
        wait_until(
            self._answers,
            process=self.process,
            timeout=READY_TIMEOUT_SECONDS,
            what="postgres",
            log=self.log,
        )

    def _answers(self) -> bool:
        try:
            self.connect("postgres").close()
        except psycopg2.OperationalError:
            return False
        return True

    def stop(self) -> None:
        """Fast shutdown (SIGINT), SIGKILL if it hangs; then remove the data directory."""
        stop_process(self.process, signal.SIGINT, timeout=30)
        shutil.rmtree(self.private_parent or self.data_dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
