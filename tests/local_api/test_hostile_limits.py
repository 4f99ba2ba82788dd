"""Hostile requests against a real server: size limits on bodies, uploads and headers, short error
messages, ids that are not ids, bad settings, a broken state directory, an open bind address."""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from tests.local_api.helpers import REQUEST_ID, chat_request, jsonl, submit, wait_until_done
from tests.local_api_server import LocalBatchAPI, wait_for

MIB = 1024 * 1024
BOUNDARY = "hostile-limits-boundary"
BATCH_CAP_MESSAGE = "File is too large: batch input files may be at most 209,715,200 bytes."
LONGEST_MESSAGE = 300
"""An error message quotes a short cut of what was sent, so it stays this short."""
MEMORY_GROWTH_LIMIT_KB = 64 * 1024
"""How far the server's peak memory may grow while it refuses a large body."""
BATCH_CAP_ERROR = {
    "message": BATCH_CAP_MESSAGE,
    "type": "invalid_request_error",
    "param": "file",
    "code": None,
}


@dataclass
class Answer:
    """One raw HTTP answer."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def error(self) -> dict:
        """The `error` object of OpenAI's envelope, with all four keys."""
        body = json.loads(self.body)
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
        return body["error"]


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Authorization: Bearer sk-local"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_answer(sock: socket.socket) -> Answer:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return Answer(response.status, response.headers, response.read())


def _connect(server: LocalBatchAPI) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _send_until_answered(sock: socket.socket, pieces: Iterator[bytes]) -> int:
    """Send pieces until the server answers or hangs up; the bytes sent before that."""
    sent = 0
    for piece in pieces:
        if select.select([sock], [], [], 0)[0]:
            break
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(piece)
    return sent


def _chunked(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """Pieces in HTTP/1.1 chunked transfer coding (never ended: the server must answer first)."""
    for piece in pieces:
        yield b"%x\r\n%s\r\n" % (len(piece), piece)


def _filler(total: int, piece: bytes = b"x" * MIB) -> Iterator[bytes]:
    """`total` bytes in pieces, produced as sent: the test never holds them."""
    for _ in range(total // len(piece)):
        yield piece


def _request_lines(total: int) -> Iterator[bytes]:
    """`total` bytes of valid batch request lines, about a MiB a piece."""
    line = jsonl([chat_request("x")])
    yield from _filler(total, line * (MIB // len(line)))


def _form_field(name: str, value: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
    ).encode()


def _file_part_head(filename: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def _status_kb(pid: int, key: str) -> int:
    """A `kB` figure of /proc/<pid>/status: VmRSS now, VmHWM the peak so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def _open_files(pid: int) -> list[str]:
    """The regular files the process holds open (pipes, sockets and devices left out)."""
    paths = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            continue
        if target.startswith("/") and not target.startswith(("/dev/", "/proc/")):
            paths.append(target)
    return paths


def _call(server: LocalBatchAPI, method: str, path: str, body: bytes = b"", **headers: str):
    """A raw call with a whole body; the answer."""
    with _connect(server) as sock:
        head = {"Content-Length": str(len(body)), **headers}
        sock.sendall(_head(method, path, head) + body)
        return _read_answer(sock)


def _assert_request_id(answer: Answer) -> None:
    assert REQUEST_ID.match(answer.headers.get("x-request-id", "")), dict(answer.headers)


# Uploads


def test_upload_declared_over_512_mb_is_refused_before_its_body(local_api: LocalBatchAPI) -> None:
    with _connect(local_api) as sock:
        sock.sendall(_head("POST", "/v1/files", {**MULTIPART, "Content-Length": str(2 * 1024**3)}))
        answer = _read_answer(sock)  # no byte of the body was sent
    assert answer.status == 413
    error = answer.error()
    assert error["type"] == "invalid_request_error"
    assert "POST /v1/files accepts at most" in error["message"]
    assert "2,147,483,648" in error["message"]
    _assert_request_id(answer)


def test_batch_upload_declared_over_200_mb_is_refused_at_its_file_part(
    local_api: LocalBatchAPI,
) -> None:
    start = _form_field("purpose", "batch") + _file_part_head("big.jsonl")
    with _connect(local_api) as sock:
        sock.sendall(_head("POST", "/v1/files", {**MULTIPART, "Content-Length": str(300 * MIB)}))
        sock.sendall(start)  # the file's bytes never come: the size is known from the length
        answer = _read_answer(sock)
    assert answer.status == 400
    assert answer.error() == BATCH_CAP_ERROR


def test_streamed_batch_upload_is_refused_past_200_mb_and_spooled_only_in_the_state_dir(
    start_local_api,
) -> None:
    server = start_local_api()
    pid = server.process.pid
    uploads = server.state_dir / "uploads"
    baseline_kb = _status_kb(pid, "VmHWM")
    seen_spool: list[list[str]] = []

    def body() -> Iterator[bytes]:
        yield _form_field("purpose", "batch") + _file_part_head("big.jsonl")
        for sent, piece in enumerate(_request_lines(400 * MIB)):
            if sent == 32:  # mid-upload: where is it being written?
                seen_spool.append(
                    wait_for(lambda: [p for p in _open_files(pid) if p.startswith(str(uploads))])
                )
                seen_spool.append(_open_files(pid))
            yield piece

    with _connect(server) as sock:
        sock.sendall(_head("POST", "/v1/files", {**MULTIPART, "Transfer-Encoding": "chunked"}))
        sent = _send_until_answered(sock, _chunked(body()))
        answer = _read_answer(sock)
    assert answer.status == 400
    assert answer.error()["message"] == BATCH_CAP_MESSAGE
    assert 200 * MIB < sent < 260 * MIB, "refused while streaming, soon after the cap"
    spooled_in_uploads, all_open = seen_spool
    assert len(spooled_in_uploads) == 1
    assert all(path.startswith(str(server.state_dir)) for path in all_open), all_open
    assert wait_for(lambda: not any(uploads.iterdir())), "the refused upload is removed"
    assert _status_kb(pid, "VmHWM") - baseline_kb < MEMORY_GROWTH_LIMIT_KB
    assert server.client().files.list().data == []


def _purpose_after_file(data_pieces: Iterator[bytes]) -> Iterator[bytes]:
    """A batch upload form whose `purpose` field comes after its file."""
    yield _file_part_head("late-purpose.jsonl")
    yield from data_pieces
    yield b"\r\n" + _form_field("purpose", "batch") + f"--{BOUNDARY}--\r\n".encode()


def test_upload_with_purpose_after_the_file_is_accepted(local_api: LocalBatchAPI) -> None:
    data = jsonl([chat_request("a"), chat_request("b")])
    answer = _call(
        local_api, "POST", "/v1/files", b"".join(_purpose_after_file(iter([data]))), **MULTIPART
    )
    assert answer.status == 200, answer.body[:300]
    uploaded = json.loads(answer.body)
    assert (uploaded["purpose"], uploaded["bytes"]) == ("batch", len(data))
    assert local_api.client().files.content(uploaded["id"]).content == data


def test_upload_over_200_mb_with_purpose_after_the_file_is_refused(start_local_api) -> None:
    server = start_local_api()
    uploads = server.state_dir / "uploads"
    with _connect(server) as sock:
        sock.sendall(_head("POST", "/v1/files", {**MULTIPART, "Transfer-Encoding": "chunked"}))
        pieces = _purpose_after_file(_request_lines(201 * MIB))
        _send_until_answered(sock, _chunked(pieces))
        sock.sendall(b"0\r\n\r\n")
        answer = _read_answer(sock)
    assert answer.status == 400
    assert answer.error() == BATCH_CAP_ERROR
    assert wait_for(lambda: not any(uploads.iterdir())), "the refused upload is removed"
    assert server.client().files.list().data == []


def test_upload_without_multipart_is_refused_clearly(local_api: LocalBatchAPI) -> None:
    answer = _call(local_api, "POST", "/v1/files", b"{}", **{"Content-Type": "application/json"})
    assert answer.status == 400
    assert "must be multipart/form-data" in answer.error()["message"]


def test_upload_with_oversized_form_fields_is_refused(local_api: LocalBatchAPI) -> None:
    body = (
        _form_field("purpose", "x" * (100 * 1024))
        + _file_part_head("a.jsonl")
        + b"{}\n\r\n"
        + f"--{BOUNDARY}--\r\n".encode()
    )
    answer = _call(local_api, "POST", "/v1/files", body, **MULTIPART)
    assert answer.status == 413
    assert "form fields of this upload are too large" in answer.error()["message"]


def test_upload_cut_before_its_last_boundary_is_refused(local_api: LocalBatchAPI) -> None:
    before = local_api.client().files.list().data
    body = _form_field("purpose", "batch") + _file_part_head("a.jsonl") + b"{}\n"
    answer = _call(local_api, "POST", "/v1/files", body, **MULTIPART)
    assert answer.status == 400
    assert "ends before its last boundary" in answer.error()["message"]
    assert local_api.client().files.list().data == before


# JSON bodies


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/batches"),
        ("PATCH", "/admin/settings"),
        ("POST", "/v1/batches/batch_0123456789abcdef0123456789abcdef/cancel"),
    ],
)
def test_control_body_declared_over_1_mib_is_refused_before_it_is_read(
    local_api: LocalBatchAPI, method: str, path: str
) -> None:
    with _connect(local_api) as sock:
        declared = {"Content-Type": "application/json", "Content-Length": str(150 * MIB)}
        sock.sendall(_head(method, path, declared))
        answer = _read_answer(sock)
    assert answer.status == 413
    error = answer.error()
    assert f"{method} {path} accepts at most 1,048,576 bytes" in error["message"]
    assert "157,286,400" in error["message"]
    _assert_request_id(answer)


@pytest.mark.parametrize("hold_seconds", [0.0, 30.0])
def test_streamed_150_mb_batch_body_is_refused_with_memory_bounded(
    start_local_api, hold_seconds: float
) -> None:
    server = start_local_api()
    server.configure(create_delay_seconds=hold_seconds)  # 30: the body is read by the hold
    pid = server.process.pid
    baseline_kb = _status_kb(pid, "VmHWM")
    pieces = [b'{"input_file_id": "', *_filler(150 * MIB)]
    with _connect(server) as sock:
        headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        sock.sendall(_head("POST", "/v1/batches", headers))
        sent = _send_until_answered(sock, _chunked(iter(pieces)))
        answer = _read_answer(sock)
    assert answer.status == 413
    assert "accepts at most 1,048,576 bytes, and this one has more" in answer.error()["message"]
    assert sent < 64 * MIB
    assert _status_kb(pid, "VmHWM") - baseline_kb < MEMORY_GROWTH_LIMIT_KB
    _assert_request_id(answer)


def test_synchronous_endpoints_take_bodies_up_to_16_mib(local_api: LocalBatchAPI) -> None:
    text = "word " * (2 * MIB // 5)
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
    accepted = _call(
        local_api,
        "POST",
        "/v1/chat/completions",
        body.encode(),
        **{"Content-Type": "application/json"},
    )
    assert accepted.status != 413, accepted.body[:300]
    with _connect(local_api) as sock:
        declared = {"Content-Type": "application/json", "Content-Length": str(17 * MIB)}
        sock.sendall(_head("POST", "/v1/chat/completions", declared))
        refused = _read_answer(sock)
    assert refused.status == 413
    assert "accepts at most 16,777,216 bytes" in refused.error()["message"]


BAD_JSON_MESSAGE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you "
    "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
)
JSON_PATHS = [
    ("POST", "/v1/batches"),
    ("POST", "/v1/chat/completions"),
    ("PATCH", "/admin/settings"),
]


@pytest.mark.parametrize(("method", "path"), JSON_PATHS)
def test_a_body_nested_200000_deep_is_a_400_saying_so(
    local_api: LocalBatchAPI, method: str, path: str
) -> None:
    body = b"[" * 200_000 + b"]" * 200_000
    answer = _call(local_api, method, path, body, **{"Content-Type": "application/json"})
    assert answer.status == 400, answer.body[:300]
    assert answer.error() == {
        "message": f"{BAD_JSON_MESSAGE} Its JSON is nested too deeply.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    _assert_request_id(answer)
    assert _call(local_api, "GET", "/health").status == 200


NOT_JSON_NUMBERS = {
    "/v1/batches": '{"input_file_id": "file-x", "endpoint": "/v1/chat/completions", '
    '"completion_window": "24h", "metadata": {"n": %s}}',
    "/v1/chat/completions": '{"model": "gpt-4o-mini", "temperature": %s, '
    '"messages": [{"role": "user", "content": "hi"}]}',
    "/admin/settings": '{"seconds_per_request": %s}',
}


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(("method", "path"), JSON_PATHS)
def test_nan_and_infinity_literals_are_not_json(
    local_api: LocalBatchAPI, method: str, path: str, literal: str
) -> None:
    body = (NOT_JSON_NUMBERS[path] % literal).encode()
    answer = _call(local_api, method, path, body, **{"Content-Type": "application/json"})
    assert answer.status == 400, answer.body[:300]
    assert answer.error() == {
        "message": BAD_JSON_MESSAGE,
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert local_api.admin()["seconds_per_request"] == 0.0


# Headers


def test_head_over_64_kib_is_refused_and_the_server_stays_well(start_local_api) -> None:
    server = start_local_api()
    pid = server.process.pid
    baseline_kb = _status_kb(pid, "VmHWM")
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        sent = _send_until_answered(sock, _filler(64 * MIB, b"a" * 65536))
        answer = _read_answer(sock)
    assert answer.status == 431
    assert "at most 65,536 bytes" in answer.error()["message"]
    _assert_request_id(answer)
    assert sent < 16 * MIB
    assert _status_kb(pid, "VmHWM") - baseline_kb < MEMORY_GROWTH_LIMIT_KB
    assert _call(server, "GET", "/health").status == 200


def test_heads_under_the_cap_and_large_bodies_on_one_connection_are_fine(
    local_api: LocalBatchAPI,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", local_api.port, timeout=10)
    headers = {"Authorization": "Bearer sk-local", "X-Padding": "p" * 60_000}
    conn.request("GET", "/health", headers=headers)
    assert conn.getresponse().read() == b'{"status": "ok"}'
    for index in range(3):  # bodies far past the head cap, read on one kept-alive connection
        data = jsonl([chat_request(str(index), "x" * 1000)] * 4000)
        conn.request(
            "POST",
            "/v1/files",
            body=_form_field("purpose", "batch")
            + _file_part_head("a.jsonl")
            + data
            + f"\r\n--{BOUNDARY}--\r\n".encode(),
            headers={"Authorization": "Bearer sk-local", **MULTIPART},
        )
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())["bytes"]) == (200, len(data))
    conn.close()


# Error messages


def test_errors_quote_only_a_short_cut_of_what_was_sent(
    local_api: LocalBatchAPI, client: OpenAI
) -> None:
    long_id = "file-" + "a" * 50_000
    answers = [
        (404, _call(local_api, "GET", f"/v1/files/{long_id}")),
        (404, _call(local_api, "GET", f"/v1/batches/batch_{'b' * 50_000}")),
        (404, _call(local_api, "POST", f"/v1/batches/batch_{'c' * 50_000}/cancel")),
        (404, _call(local_api, "GET", f"/v1/nowhere/{'d' * 50_000}")),
        (400, _call(local_api, "GET", f"/v1/files?limit={'9' * 50_000}x")),
        (400, _call(local_api, "GET", f"/v1/files?order={'e' * 50_000}")),
    ]
    for status, field, value in [
        (404, "input_file_id", long_id + "a" * 900_000),
        (400, "endpoint", "/v1/" + "f" * 900_000),
        (400, "completion_window", "g" * 900_000),
    ]:
        body = {"input_file_id": "file-x", "endpoint": "/v1/chat/completions"}
        body |= {"completion_window": "24h", field: value}
        answers.append((status, _call(local_api, "POST", "/v1/batches", json.dumps(body).encode())))
    answers.append(
        (400, _call(local_api, "PATCH", "/admin/settings", json.dumps({"h" * 900_000: 1}).encode()))
    )
    for status, answer in answers:
        assert answer.status == status, answer.body[:300]
        error = answer.error()
        assert len(error["message"]) < LONGEST_MESSAGE, error["message"][:300]
        assert len(error["param"] or "") < LONGEST_MESSAGE
    assert "characters)" in answers[0][1].error()["message"]


# Ids that are not ids


@pytest.mark.parametrize("path", ["/v1/files/..", "/v1/files/%2E%2E", "/v1/files/."])
def test_delete_of_a_dot_path_is_a_404_in_the_envelope(local_api: LocalBatchAPI, path) -> None:
    answer = _call(local_api, "DELETE", path)
    assert answer.status == 404
    assert answer.error()["type"] == "invalid_request_error"
    _assert_request_id(answer)
    assert (local_api.state_dir / "files").is_dir()


def test_delete_of_an_unknown_id_leaves_a_stray_file_alone(local_api: LocalBatchAPI) -> None:
    stray = local_api.state_dir / "files" / "file-NotAnUploadOfOurs"
    stray.write_bytes(b"someone else's bytes")
    other = local_api.state_dir / "files" / "notes.txt"
    other.write_bytes(b"not an id at all")
    try:
        for name in (stray.name, other.name):
            with pytest.raises(openai.NotFoundError):
                local_api.client().files.delete(name)
        assert stray.read_bytes() == b"someone else's bytes"
        assert other.read_bytes() == b"not an id at all"
    finally:
        stray.unlink()
        other.unlink()


def test_missing_output_bytes_answer_500_in_the_envelope(
    local_api: LocalBatchAPI, client: OpenAI
) -> None:
    done = wait_until_done(client, submit(client, [chat_request("a")]).id)
    assert done.output_file_id is not None
    (local_api.state_dir / "files" / done.output_file_id).unlink()
    with pytest.raises(openai.InternalServerError) as caught:
        client.files.content(done.output_file_id)
    assert caught.value.status_code == 500
    assert caught.value.body["type"] == "server_error"
    assert done.output_file_id in caught.value.body["message"]
    assert "missing" in caught.value.body["message"]
    assert REQUEST_ID.match(caught.value.response.headers.get("x-request-id", ""))


# Settings


@pytest.mark.parametrize("number", ["1e400", "-1e400"])
def test_settings_refuse_numbers_that_are_not_finite(
    local_api: LocalBatchAPI, client: OpenAI, number: str
) -> None:
    """Python reads a number past a double as infinity; the settings refuse it."""
    for name in ("clock_offset_seconds", "window_seconds", "seconds_per_request"):
        answer = _call(local_api, "PATCH", "/admin/settings", f'{{"{name}": {number}}}'.encode())
        assert answer.status == 400
        error = answer.error()
        assert error["param"] == name
        assert "finite number" in error["message"]
    assert local_api.admin()["clock_offset_seconds"] == 0.0
    done = wait_until_done(client, submit(client, [chat_request("a")]).id)
    assert done.status == "completed"


def test_clock_offset_beyond_a_century_is_refused(local_api: LocalBatchAPI, client: OpenAI) -> None:
    answer = _call(local_api, "PATCH", "/admin/settings", b'{"clock_offset_seconds": 1e300}')
    assert answer.status == 400
    assert answer.error()["param"] == "clock_offset_seconds"
    assert local_api.configure(clock_offset_seconds=-3e9)["clock_offset_seconds"] == -3e9
    assert client.files.create(file=("a.jsonl", b"{}\n"), purpose="batch").expires_at


# A broken state directory, and start-up


def test_an_unhandled_error_answers_500_in_the_envelope_with_a_request_id(
    start_local_api,
) -> None:
    server = start_local_api()
    uploads = server.state_dir / "uploads"
    uploads.rmdir()
    uploads.write_bytes(b"a file where the server expects its uploads folder")
    with pytest.raises(openai.InternalServerError) as caught:
        server.client().files.create(file=("a.jsonl", b"{}\n"), purpose="batch")
    assert caught.value.body == {
        "message": "The server had an error while processing your request. Sorry about that! "
        "(The local Batch API logged the cause to its stderr.)",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    assert REQUEST_ID.match(caught.value.response.headers.get("x-request-id", ""))
    assert "NotADirectoryError" in server.log()
    assert server.client().files.list().data == []


def test_a_folder_inside_uploads_does_not_stop_start_up(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "uploads" / "kept-folder").mkdir(parents=True)
    (state / "uploads" / "kept-folder" / "inside.txt").write_text("kept")
    (state / "uploads" / "upload-cut-short").write_bytes(b"left by a crash")
    server = LocalBatchAPI(state).start()
    try:
        assert server.client().files.list().data == []
        assert (state / "uploads" / "kept-folder" / "inside.txt").read_text() == "kept"
        assert not (state / "uploads" / "upload-cut-short").exists()
    finally:
        server.stop()


def test_listening_beyond_loopback_without_a_key_warns(
    start_local_api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOCAL_BATCH_API_KEY", raising=False)
    open_server = start_local_api("--host", "0.0.0.0", name="open")
    keyed = start_local_api("--host", "0.0.0.0", api_key="sk-key", name="keyed")
    loopback = start_local_api(name="loopback")
    assert "warning: the local Batch API listens on 0.0.0.0, beyond loopback, without " in (
        open_server.log()
    )
    assert "--api-key" in open_server.log()
    assert "beyond loopback" not in keyed.log()
    assert "beyond loopback" not in loopback.log()
    client = open_server.client()
    assert wait_until_done(client, submit(client, [chat_request("a")]).id).status == "completed"
