"""`make run` picks its backend from the environment."""

from __future__ import annotations

from pathlib import Path

from openai import OpenAI

from batch_assets.defs.resources import batch_api_resource
from batch_assets.launcher import LOCAL_API_KEY, backend_environment
from tests.local_api.helpers import chat_request, submit, wait_until_done
from tests.local_api_server import LocalBatchAPI


def test_without_a_key_the_local_batch_api_is_started(tmp_path: Path) -> None:
    env, server = backend_environment({"PATH": "/usr/bin"}, tmp_path / "state", 0)
    try:
        assert server is not None
        assert env["OPENAI_BASE_URL"] == server.base_url
        assert env["OPENAI_BASE_URL"].startswith("http://127.0.0.1:")
        assert env["OPENAI_API_KEY"] == LOCAL_API_KEY
        assert server.admin()["seconds_per_request"] > 0
    finally:
        if server is not None:
            server.stop()


def test_with_an_upstream_url_the_local_batch_api_sends_the_requests_there(
    tmp_path: Path, local_api: LocalBatchAPI
) -> None:
    local_api.admin("DELETE", "stats")
    environ = {"PATH": "/usr/bin", "UPSTREAM_URL": local_api.base_url}
    env, server = backend_environment(environ, tmp_path / "state", 0)
    try:
        assert server is not None
        assert server.admin()["seconds_per_request"] == 0
        client = OpenAI(base_url=env["OPENAI_BASE_URL"], api_key=env["OPENAI_API_KEY"])
        batch = wait_until_done(client, submit(client, [chat_request("a"), chat_request("b")]).id)
        assert batch.request_counts.completed == 2
        assert local_api.admin("GET", "stats")["calls"]["POST /v1/chat/completions"] == 2
    finally:
        if server is not None:
            server.stop()


def test_with_a_key_nothing_is_started_and_the_environment_is_kept(tmp_path: Path) -> None:
    environ = {"OPENAI_API_KEY": "sk-real", "OPENAI_BASE_URL": "https://example.invalid/v1"}
    env, server = backend_environment(environ, tmp_path / "state", 0)
    assert server is None
    assert env == environ
    assert not (tmp_path / "state").exists()


def test_resource_targets_openai_a_base_url_or_azure() -> None:
    assert batch_api_resource({}).host == "api.openai.com"
    assert batch_api_resource({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}).host == "127.0.0.1:9"
    azure = batch_api_resource({"AZURE_OPENAI_ENDPOINT": "https://team.openai.azure.com"})
    assert azure.host == "team.openai.azure.com"
    assert azure.backend().build_client().base_url.path.startswith("/openai")


def test_optional_variables_set_empty_count_as_unset() -> None:
    """Deployments pass optional variables empty; an empty base URL must not replace OpenAI's."""
    resource = batch_api_resource(
        {
            "OPENAI_BASE_URL": "",
            "OPENAI_ORG_ID": "",
            "OPENAI_PROJECT_ID": "",
            "AZURE_OPENAI_ENDPOINT": "",
        }
    )
    assert resource.azure_endpoint is None
    assert (resource.base_url, resource.organization, resource.project) == (None, None, None)
    assert resource.host == "api.openai.com"
