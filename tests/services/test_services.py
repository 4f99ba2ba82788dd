"""The service starters: a real S3 over HTTP and a real PostgreSQL over TCP, then torn down.

`s3_server` (the session's) and `s3` (it, with its AWS_* variables set) come from tests/conftest.py.
"""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services.postgres import PostgresServer
from tests.services.s3 import S3Server


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer.start(tmp_path_factory.mktemp("postgres"))
    yield server
    server.stop()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_s3_put_then_get_over_http(s3_server: S3Server) -> None:
    s3 = s3_server
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key="folder/one.jsonl", Body=b'{"a": 1}\n')
    client.put_object(Bucket=s3.bucket, Key="folder/two.parquet", Body=b"PAR1")

    assert s3.read("folder/one.jsonl") == b'{"a": 1}\n'
    assert s3.object_keys("folder/") == ["folder/one.jsonl", "folder/two.parquet"]
    # Plain HTTP on loopback: a presigned GET works without any SDK.
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": s3.bucket, "Key": "folder/one.jsonl"}, ExpiresIn=60
    )
    assert url.startswith(f"http://127.0.0.1:{s3.port}/")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b'{"a": 1}\n'
    assert set(s3.env) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
    }


def test_s3fs_sees_the_same_bucket_through_the_environment(s3: S3Server) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.pipe(f"{s3.bucket}/via-s3fs/data.bin", b"\x00\x01")

    assert s3.read("via-s3fs/data.bin") == b"\x00\x01"
    assert "via-s3fs/data.bin" in s3.object_keys()


def test_postgres_sql_round_trip_over_tcp(postgres: PostgresServer) -> None:
    assert postgres.url.startswith(f"postgresql://dagster:{postgres.password}@127.0.0.1:")
    with postgres.connect() as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE runs_probe (id serial PRIMARY KEY, body jsonb)")
        cursor.execute("INSERT INTO runs_probe (body) VALUES (%s), (%s)", ('{"a": 1}', "[2]"))
    connection.close()

    assert postgres.query("SELECT id, body FROM runs_probe ORDER BY id") == [
        (1, {"a": 1}),
        (2, [2]),
    ]
    assert postgres.query("SHOW server_version")[0][0].startswith("16")
    assert postgres.query("SELECT inet_server_addr()::text") == [("127.0.0.1/32",)]


def test_postgres_refuses_a_wrong_password(postgres: PostgresServer) -> None:
    import psycopg2

    postgres_with_wrong_password = PostgresServer(
        root=postgres.root, port=postgres.port, password="wrong"
    )
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        postgres_with_wrong_password.connect()


def test_postgres_keeps_working_when_a_pytest_session_starts(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Every pytest session puts /tmp/pytest-of-USER back to mode 0700 as it starts; a server
    # whose files were under it would then fail at its next write of pg_control.
    pytest_root = tmp_path_factory.getbasetemp().parent
    pytest_root.chmod(pytest_root.stat().st_mode & ~0o077)

    postgres.query("CREATE TABLE after_chmod AS SELECT generate_series(1, 1000) AS n")
    postgres.query("CHECKPOINT")

    assert postgres.query("SELECT count(*) FROM after_chmod") == [(1000,)]


def test_stop_frees_the_port_and_removes_the_data(tmp_path: Path) -> None:
    server = PostgresServer.start(tmp_path / "postgres")
    assert _listening(server.port)
    assert (server.data_dir / "PG_VERSION").exists()

    server.stop()

    assert not _listening(server.port)
    assert not server.data_dir.exists()
    assert server.private_parent is None or not server.private_parent.exists()
    assert server.process is not None and server.process.returncode == 0
    assert "database system is shut down" in server.log()
