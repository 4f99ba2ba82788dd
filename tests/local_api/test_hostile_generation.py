"""Hostile answer generation: every request is refused or answered within bounded work."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from batch_assets.local_api.inference_api import ANSWER_WORKERS
from batch_assets.local_api.json_schema_instance import (
    MAX_ANSWER_CHARS,
    MAX_BUILD_STEPS,
    MAX_PATTERN_CHARS,
    DeadlinePassed,
    GenerationBudget,
    SchemaRefused,
    _pattern_plan,
    instance_for,
)
from batch_assets.local_api.local_models import (
    MAX_BODY_DEPTH,
    AnswerTimedOut,
    RequestRejected,
    estimate_input_tokens,
    respond,
)
from tests.local_api.helpers import read_lines, submit, wait_until_done
from tests.local_api_server import LocalBatchAPI

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
EMBEDDINGS = "/v1/embeddings"
SCHEMA_PARAM = "response_format.json_schema.schema"
HEALTH_DEADLINE_SECONDS = 1.0
RSS_GROWTH_LIMIT_KB = 200 * 1024

TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "minItems": 2}
            },
            "required": ["children"],
        }
    },
    "$ref": "#/$defs/node",
}
LOOKAHEAD_PATTERN = "(?=(a+)+b)a{22}"
# Each string of this pattern takes 49,000 emission steps (and is empty).
SLOW_PATTERN = "(?:a{0}){49000}"
# An anchor inside: no text matches, and checking one backtracks through every split of it.
INNER_ANCHOR_PATTERN = "(?:a+){12}$b"
# Legal but heavy: about 90,000 of the 100,000 steps a request may spend, then answered.
HEAVY_ALLOWED = {"type": "array", "minItems": 90_000, "items": {"type": "integer"}}


def chat_body(schema: dict | None = None, **extra: Any) -> dict:
    """A chat body, answering in `schema` when one is given."""
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Describe it."}],
        **extra,
    }
    if schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema},
        }
    return body


def string_schema(**keywords: Any) -> dict:
    """An object schema with one required string property `s`."""
    return {
        "type": "object",
        "properties": {"s": {"type": "string", **keywords}},
        "required": ["s"],
    }


def nested_list(depth: int) -> list:
    """A list nested `depth` deep: [[[...]]]."""
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


# Each hostile body, the endpoint it goes to, and the param its refusal names.
HOSTILE: dict[str, tuple[str, str, dict]] = {
    "recursive_ref_tree": (CHAT, SCHEMA_PARAM, chat_body(TREE)),
    "min_length_1e9": (CHAT, SCHEMA_PARAM, chat_body(string_schema(minLength=10**9))),
    "min_items_1e9": (CHAT, SCHEMA_PARAM, chat_body({"type": "array", "minItems": 10**9})),
    "lookahead_regex": (CHAT, SCHEMA_PARAM, chat_body(string_schema(pattern=LOOKAHEAD_PATTERN))),
    "huge_regex_repeat": (CHAT, SCHEMA_PARAM, chat_body(string_schema(pattern="a{99999999}"))),
    "minimum_1e400": (
        CHAT,
        f"{SCHEMA_PARAM}.properties.n.minimum",
        json.loads(
            '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], '
            '"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": '
            '{"type": "object", "properties": {"n": {"type": "integer", "minimum": 1e400}}}}}}'
        ),
    ),
    "temperature_minus_1e400": (
        CHAT,
        "temperature",
        json.loads(
            '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], '
            '"temperature": -1e400}'
        ),
    ),
    "embeddings_input_900_deep": (
        EMBEDDINGS,
        "input" + "[0]" * 7 + "...",
        {"model": "text-embedding-3-small", "input": nested_list(900)},
    ),
    "function_parameters_tree": (
        CHAT,
        "tools[0].function.parameters",
        chat_body(
            tools=[{"type": "function", "function": {"name": "grow", "parameters": TREE}}],
            tool_choice="required",
        ),
    ),
}
# Legal but heavy: each takes about its whole work budget before being refused.
SLOW: dict[str, tuple[str, str, dict]] = {
    "many_steps": (
        CHAT,
        SCHEMA_PARAM,
        chat_body(
            {"type": "array", "minItems": 90_000, "items": {"allOf": [{"allOf": [{"const": 0}]}]}}
        ),
    ),
    "many_characters": (
        CHAT,
        SCHEMA_PARAM,
        chat_body({"type": "array", "minItems": 60_000, "items": string_schema()}),
    ),
    "many_pattern_strings": (
        CHAT,
        SCHEMA_PARAM,
        chat_body(
            {"type": "array", "minItems": 100, "items": {"type": "string", "pattern": SLOW_PATTERN}}
        ),
    ),
}


def rejection(endpoint: str, body: dict) -> RequestRejected:
    """Call respond() and return the RequestRejected it raises."""
    with pytest.raises(RequestRejected) as caught:
        respond(endpoint, body, created=0)
    return caught.value


# --- unit: respond() and instance_for() -----------------------------------------------------


def schema_of(body: dict) -> dict | None:
    """The response_format schema or forced function's parameters a chat body holds, if any."""
    if "response_format" in body:
        return body["response_format"]["json_schema"]["schema"]
    if "tools" in body:
        return body["tools"][0]["function"]["parameters"]
    return None


@pytest.mark.parametrize("name", sorted({**HOSTILE, **SLOW}))
def test_hostile_bodies_are_refused_naming_the_param(name: str) -> None:
    endpoint, param, body = {**HOSTILE, **SLOW}[name]
    rejected = rejection(endpoint, body)
    assert (rejected.status_code, rejected.type, rejected.param) == (
        400,
        "invalid_request_error",
        param,
    )


@pytest.mark.parametrize("name", sorted({**HOSTILE, **SLOW}))
def test_hostile_schemas_spend_at_most_the_request_budget(name: str) -> None:
    schema = schema_of({**HOSTILE, **SLOW}[name][2])
    if schema is None or "1e400" in json.dumps(schema).replace("Infinity", "1e400"):
        return  # refused before any value is built
    budget = GenerationBudget()
    with pytest.raises(SchemaRefused):
        instance_for(schema, seed=0, budget=budget)
    assert MAX_BUILD_STEPS - budget.steps <= MAX_BUILD_STEPS + 1


def test_refusals_say_why() -> None:
    messages = {name: rejection(e, b).message for name, (e, _, b) in {**HOSTILE, **SLOW}.items()}
    assert "no finite instance" in messages["recursive_ref_tree"]
    assert "'#/$defs/node'" in messages["recursive_ref_tree"]
    assert "'minLength' 1000000000" in messages["min_length_1e9"]
    assert "'minItems' 1000000000" in messages["min_items_1e9"]
    assert "exponential time" in messages["lookahead_regex"]
    assert "'pattern'" in messages["huge_regex_repeat"]
    assert messages["minimum_1e400"] == (
        f"Invalid '{SCHEMA_PARAM}.properties.n.minimum': number out of range. Expected a "
        "number that fits in a double (magnitude at most 1.8e308), but got infinity instead."
    )
    assert "got -infinity" in messages["temperature_minus_1e400"]
    assert f"deeper than {MAX_BODY_DEPTH} levels" in messages["embeddings_input_900_deep"]
    assert "function 'grow'" in messages["function_parameters_tree"]
    assert "100,000 steps" in messages["many_steps"]
    assert messages["many_pattern_strings"] == (
        "Invalid schema for response_format 'answer': 'pattern' '(?:a{0}){49000}' needs more "
        "than the 100,000 steps a request may spend on its values (at $[1])."
    )
    assert f"{MAX_ANSWER_CHARS:,} characters" in messages["many_characters"]


def test_an_integer_no_double_holds_is_refused() -> None:
    body = json.loads('{"model": "gpt-4o-mini", "prompt": "hi", "seed": 1' + "0" * 400 + "}")
    rejected = rejection("/v1/completions", body)
    assert rejected.param == "seed"
    assert "an integer of 401 digits" in rejected.message


def test_deep_metadata_is_refused_before_it_is_echoed() -> None:
    nested: dict = {}
    for _ in range(MAX_BODY_DEPTH + 5):
        nested = {"k": nested}
    body = {"model": "gpt-4o-mini", "input": "hi", "metadata": nested}
    assert rejection(RESPONSES, body).param.startswith("metadata.k.k")


def test_token_estimates_of_deep_inputs_do_not_recurse() -> None:
    assert estimate_input_tokens(EMBEDDINGS, {"input": nested_list(5000)}) == 0


def test_max_tokens_cuts_a_huge_minimum_instead_of_refusing_it() -> None:
    answer = respond(CHAT, chat_body(string_schema(minLength=10**9), max_tokens=50), created=0)
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "length"
    assert len(choice["message"]["content"]) == 200


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "minItems": 40, "items": string_schema()},
        {"type": "object", "properties": {"tree": TREE["$defs"]["node"]["properties"]}},
        string_schema(pattern=r"^[a-z]{30,40}$"),
    ],
)
def test_a_cut_answer_is_the_start_of_the_whole_one(schema: dict) -> None:
    whole = respond(CHAT, chat_body(schema), created=0)["choices"][0]["message"]["content"]
    for max_tokens in (1, 5, 17, 40):
        cut = respond(CHAT, chat_body(schema, max_tokens=max_tokens), created=0)["choices"][0]
        text = cut["message"]["content"]
        if len(whole) > 4 * max_tokens:
            assert (cut["finish_reason"], text) == ("length", whole[: 4 * max_tokens])
        else:
            assert text == whole


def test_choices_share_one_budget() -> None:
    body = chat_body(string_schema(minLength=5_000), n=128)
    assert "characters" in rejection(CHAT, body).message
    assert (
        len(respond(CHAT, chat_body(string_schema(minLength=3_000), n=128), created=0)["choices"])
        == 128
    )


@pytest.mark.parametrize(
    "schema",
    [
        {  # children optional: the minimal tree stops
            "$defs": {"node": {**TREE["$defs"]["node"], "required": []}},
            "$ref": "#/$defs/node",
        },
        {  # a branch that stops
            "$defs": {
                "node": {
                    "anyOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "properties": {"next": {"$ref": "#/$defs/node"}},
                            "required": ["next"],
                        },
                    ]
                }
            },
            "$ref": "#/$defs/node",
        },
        {  # the stopping branch comes last and itself mentions a ref
            "$defs": {
                "leaf": {"type": "integer"},
                "node": {
                    "type": "object",
                    "properties": {
                        "kids": {
                            "type": "array",
                            "minItems": 2,
                            "items": {
                                "anyOf": [{"$ref": "#/$defs/node"}, {"$ref": "#/$defs/leaf"}]
                            },
                        }
                    },
                    "required": ["kids"],
                },
            },
            "$ref": "#/$defs/node",
        },
    ],
)
def test_recursion_with_a_way_out_is_answered_and_valid(schema: dict) -> None:
    for seed in range(20):
        jsonschema.validate(instance_for(schema, seed=seed), schema)


def test_lookaround_patterns_without_nested_repeats_still_generate() -> None:
    pattern = r"^(?=.*[a-z])(?=.*[A-Z])(?=.*\d)(?=.*[@$!%*?&])[A-Za-z\d@$!%*?&]{8,}$"
    for seed in range(20):
        assert re.search(pattern, instance_for({"type": "string", "pattern": pattern}, seed=seed))


def test_pattern_strings_spend_the_request_budget_not_one_each() -> None:
    schema = {"type": "array", "minItems": 10, "items": {"type": "string", "pattern": SLOW_PATTERN}}
    budget = GenerationBudget()
    with pytest.raises(SchemaRefused, match=r"100,000 steps a request may spend .*\(at \$\[1\]\)"):
        instance_for(schema, seed=0, budget=budget)
    assert budget.steps == -1  # the second string's emission overran the one shared budget


def test_an_anchor_inside_a_pattern_limits_what_is_checked() -> None:
    plan = _pattern_plan(INNER_ANCHOR_PATTERN)
    assert plan.check_limit is not None
    assert plan.check_limit < 12  # every built string (12 or more a's) is left unchecked
    budget = GenerationBudget()
    value = instance_for({"type": "string", "pattern": INNER_ANCHOR_PATTERN}, seed=0, budget=budget)
    assert not re.search(INNER_ANCHOR_PATTERN, value)  # no string matches: plain words instead
    assert MAX_BUILD_STEPS - budget.steps < MAX_BUILD_STEPS // 10  # 24 short attempts


def test_an_anchor_inside_a_repeated_repetition_is_refused() -> None:
    with pytest.raises(SchemaRefused, match="an anchor inside it"):
        instance_for({"type": "string", "pattern": "(?:a+)+$b"}, seed=0)


@pytest.mark.parametrize("pattern", ["^a$|^b$", "^(?:cat|dog)$", r"\A[a-z]+\Z", "(^x)$"])
def test_anchors_at_the_ends_still_generate_matching_text(pattern: str) -> None:
    assert _pattern_plan(pattern).check_limit is None
    for seed in range(10):
        assert re.search(pattern, instance_for({"type": "string", "pattern": pattern}, seed=seed))


def test_a_pattern_longer_than_the_cap_is_refused_before_it_is_parsed() -> None:
    parses_before = _pattern_plan.cache_info().misses
    body = chat_body(string_schema(pattern="a" * 1_000_000))
    rejected = rejection(CHAT, body)
    assert (rejected.status_code, rejected.param) == (400, SCHEMA_PARAM)
    assert rejected.message == (
        "Invalid schema for response_format 'answer': 'pattern' is 1,000,000 characters long, "
        f"more than the {MAX_PATTERN_CHARS:,} the local models accept (at $.s)."
    )
    assert _pattern_plan.cache_info().misses == parses_before
    assert _pattern_plan.cache_info().maxsize <= 64


def test_a_pattern_at_the_cap_is_answered() -> None:
    pattern = "a" * MAX_PATTERN_CHARS
    answer = respond(CHAT, chat_body(string_schema(pattern=pattern)), created=0)
    assert json.loads(answer["choices"][0]["message"]["content"]) == {"s": pattern}


def test_building_stops_soon_after_the_deadline() -> None:
    budget = GenerationBudget(deadline=time.monotonic() - 1)
    with pytest.raises(DeadlinePassed):
        instance_for(HEAVY_ALLOWED, seed=0, budget=budget)
    assert MAX_BUILD_STEPS - budget.steps <= 1024


def test_a_pattern_stops_soon_after_the_deadline() -> None:
    schema = {"type": "string", "pattern": SLOW_PATTERN}
    budget = GenerationBudget(deadline=time.monotonic() - 1)
    with pytest.raises(DeadlinePassed):
        instance_for(schema, seed=0, budget=budget)
    assert MAX_BUILD_STEPS - budget.steps <= 1024


def test_respond_past_its_deadline_is_a_timeout() -> None:
    with pytest.raises(AnswerTimedOut) as caught:
        respond(CHAT, chat_body(HEAVY_ALLOWED), created=0, deadline=time.monotonic() - 1)
    rejected = caught.value
    assert (rejected.status_code, rejected.type, rejected.code) == (504, "server_error", "timeout")
    answer = respond(CHAT, chat_body(HEAVY_ALLOWED), created=0)
    assert len(json.loads(answer["choices"][0]["message"]["content"])) >= 90_000


# A lone surrogate in a string or key, the param its refusal names, and the endpoint.
SURROGATES: dict[str, tuple[str, str, dict]] = {
    "model": (CHAT, "model", chat_body(model="gpt-4o-mini\ud800")),
    "content": (
        CHAT,
        "messages[0].content",
        chat_body(messages=[{"role": "user", "content": "hi \udc00 there"}]),
    ),
    "metadata_value": (
        RESPONSES,
        "metadata.a",
        {"model": "gpt-4o-mini", "input": "hi", "metadata": {"a": "\ud800"}},
    ),
    "metadata_key": (
        RESPONSES,
        "metadata.k\\ud800",
        {"model": "gpt-4o-mini", "input": "hi", "metadata": {"k\ud800": "v"}},
    ),
    "list_of_strings": (
        EMBEDDINGS,
        "input[1]",
        {"model": "text-embedding-3-small", "input": ["fine", "bad \udfff"]},
    ),
}


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_a_lone_surrogate_is_refused_naming_the_param(name: str) -> None:
    endpoint, param, body = SURROGATES[name]
    rejected = rejection(endpoint, body)
    assert (rejected.status_code, rejected.param, rejected.code) == (400, param, "invalid_value")
    assert "lone UTF-16 surrogate" in rejected.message
    rejected.message.encode("utf-8")  # the refusal itself is valid Unicode


def test_surrogate_pairs_and_other_unicode_are_answered() -> None:
    body = chat_body(messages=[{"role": "user", "content": "caf\u00e9 \U0001f600 \u4e2d"}])
    assert respond(CHAT, body, created=0)["choices"][0]["message"]["role"] == "assistant"


def test_a_pattern_in_a_schema_is_refused_with_its_place() -> None:
    with pytest.raises(SchemaRefused, match=r"exponential time \(at \$\.s\)"):
        instance_for(string_schema(pattern=LOOKAHEAD_PATTERN), seed=0)


# --- against a real server process ------------------------------------------------------------


def rss_kb(server: LocalBatchAPI) -> int:
    """The server process's resident memory (VmRSS) in kB."""
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))


@contextmanager
def health_watch(server: LocalBatchAPI) -> Iterator[list[float]]:
    """Poll /health from another thread; yield the latencies (inf for a failed poll)."""
    latencies: list[float] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(
                    f"{server.root_url}/health", timeout=HEALTH_DEADLINE_SECONDS
                ) as reply:
                    reply.read()
                latencies.append(time.monotonic() - started)
            except OSError:
                latencies.append(float("inf"))
            done.wait(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        yield latencies
    finally:
        done.set()
        poller.join()


def as_json(value: Any) -> str:
    """Write JSON with an infinite float written back as the 1e400 it was read from."""
    return json.dumps(value).replace("-Infinity", "-1e400").replace("Infinity", "1e400")


def send_raw(server: LocalBatchAPI, endpoint: str, body: dict) -> tuple[int, dict]:
    """POST a JSON body (1e400 stays a number) and return the status and answer."""
    request = urllib.request.Request(
        f"{server.root_url}{endpoint}",
        data=as_json(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-local-test"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def server(start_local_api: Callable[..., LocalBatchAPI]) -> LocalBatchAPI:
    """A dedicated server, so its memory is this test's alone."""
    return start_local_api()


def test_hostile_bodies_on_the_sync_endpoint_leave_health_answering(server: LocalBatchAPI) -> None:
    before = rss_kb(server)
    for name, (endpoint, param, body) in {**HOSTILE, **SLOW}.items():
        with health_watch(server) as latencies:
            status, answer = send_raw(server, endpoint, body)
        assert (status, answer["error"]["param"]) == (400, param), name
        assert answer["error"]["type"] == "invalid_request_error", name
        assert latencies and max(latencies) < HEALTH_DEADLINE_SECONDS, (name, latencies)
    assert rss_kb(server) - before < RSS_GROWTH_LIMIT_KB


def test_lone_surrogates_on_the_sync_endpoints_answer_400_naming_the_param(
    server: LocalBatchAPI,
) -> None:
    for name, (endpoint, param, body) in SURROGATES.items():
        status, answer = send_raw(server, endpoint, body)
        assert (status, answer["error"]["param"]) == (400, param), name
        assert answer["error"]["code"] == "invalid_value", name


def test_a_timed_out_answer_frees_its_worker(server: LocalBatchAPI) -> None:
    server.configure(sync_timeout_seconds=0.2)
    with ThreadPoolExecutor(max_workers=2 * ANSWER_WORKERS) as senders:
        heavy = list(
            senders.map(
                lambda _: send_raw(server, CHAT, chat_body(HEAVY_ALLOWED)), range(ANSWER_WORKERS)
            )
        )
        assert [status for status, _ in heavy] == [504] * ANSWER_WORKERS
        # each worker stopped at its deadline: good requests find the pool free at once
        good = list(
            senders.map(lambda _: send_raw(server, CHAT, chat_body()), range(2 * ANSWER_WORKERS))
        )
    assert [status for status, _ in good] == [200] * (2 * ANSWER_WORKERS)


def test_a_slow_answer_times_out_with_the_error_envelope(server: LocalBatchAPI) -> None:
    heavy = chat_body({"type": "array", "minItems": 20_000, "items": {"type": "integer"}})
    server.configure(sync_timeout_seconds=0.001)
    with health_watch(server) as latencies:
        status, answer = send_raw(server, CHAT, heavy)
    assert status == 504
    assert (answer["error"]["type"], answer["error"]["code"]) == ("server_error", "timeout")
    assert "timed out" in answer["error"]["message"]
    assert max(latencies) < HEALTH_DEADLINE_SECONDS
    server.configure(sync_timeout_seconds=60)
    status, answer = send_raw(server, CHAT, heavy)
    assert status == 200
    assert len(json.loads(answer["choices"][0]["message"]["content"])) >= 20_000


def test_hostile_lines_in_a_batch_end_as_error_lines_and_the_next_batch_completes(
    server: LocalBatchAPI,
) -> None:
    client = server.client(timeout=60)
    before = rss_kb(server)
    cases = {**HOSTILE, **SLOW}
    hostile = [name for name, (endpoint, _, _) in cases.items() if endpoint == CHAT]
    lines = [
        as_json({"custom_id": name, "method": "POST", "url": CHAT, "body": cases[name][2]})
        for name in hostile
    ]
    good_body = chat_body({"type": "object", "properties": {"a": {"type": "string"}}})
    good = {"custom_id": "good", "method": "POST", "url": CHAT, "body": good_body}
    with health_watch(server) as latencies:
        batch = wait_until_done(client, submit(client, [*lines, good]).id, timeout=120)
    assert batch.status == "completed"
    errors = {line["custom_id"]: line for line in read_lines(client, batch.error_file_id)}
    assert set(errors) == set(hostile)
    for name, line in errors.items():
        response = line["response"]
        assert response["status_code"] == 400, name
        assert response["body"]["error"]["param"] == cases[name][1], name
    outputs = read_lines(client, batch.output_file_id)
    assert [line["custom_id"] for line in outputs] == ["good"]
    assert max(latencies) < HEALTH_DEADLINE_SECONDS
    after = wait_until_done(client, submit(client, [good]).id)
    assert (after.status, after.request_counts.completed) == ("completed", 1)
    assert rss_kb(server) - before < RSS_GROWTH_LIMIT_KB
