"""Static checks of the production deployment files in deploy/.

Docker and Kubernetes do not run here, so these tests read the files and hold them to the
things that do exist here: Dagster's own config schemas and CLIs, the local Batch API's CLI,
the environment variables the package reads, and the key paths of Dagster's Helm chart.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatch
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import click
import pytest
import sqlalchemy
import yaml
from dagster._cli import cli as dagster_cli
from dagster._config import process_config, resolve_to_config_type
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._daemon.cli import cli as daemon_cli
from dagster._serdes.config_class import class_from_code_pointer
from dagster_webserver.cli import cli as webserver_cli

from batch_assets import project
from batch_assets.local_api.__main__ import parse_args as local_api_args
from batch_assets.pipeline.keys import (
    BACKOFF_VARIABLE,
    INTERVAL_VARIABLE,
    PIPELINE_TAG,
    STORAGE_DIR_VARIABLE,
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PACKAGE = ROOT / "batch_assets"
README = ROOT / "README.md"


def production_section() -> str:
    """The README's "Production" section, up to the next top-level heading."""
    text = README.read_text()
    start = text.index("\n## Production\n") + 1
    end = text.find("\n## ", start)
    return text[start : end if end != -1 else len(text)]


ENV_EXAMPLE = DEPLOY / ".env.example"
YAML_FILES = ("dagster.yaml", "docker-compose.yml", "workspace.yaml", "helm-values.yaml")

CODE_SERVICE = "batch-assets-code"
LOCAL_API_SERVICE = "local-batch-api"
# The services that launch runs (the daemon dequeues and launches; the webserver terminates).
LAUNCHING_SERVICES = ("daemon", "webserver")
APP_SERVICES = {CODE_SERVICE, "webserver", "daemon", LOCAL_API_SERVICE}

# What every run needs, whatever the backend: the instance, the storage root, the Batch API.
REQUIRED_RUN_ENV = {
    "DAGSTER_POSTGRES_URL",
    STORAGE_DIR_VARIABLE,
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
}
# Read by the package but opt-in (see deploy/dagster.yaml): an empty value would reach the client.
OPTIONAL_RUN_ENV = {
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_API_KEY",
    "OPENAI_API_VERSION",
}
# Only the code location evaluates the sensor.
SENSOR_ENV = {INTERVAL_VARIABLE, BACKOFF_VARIABLE}
# s3:// storage goes through s3fs, whose botocore reads these from the environment. (botocore
# takes the region from AWS_DEFAULT_REGION; AWS_REGION it ignores.)
BOTOCORE_ENV = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
}
# Dagster and the local API, not this package, read these.
PLATFORM_ENV = {"DAGSTER_HOME", "DAGSTER_CURRENT_IMAGE", "LOCAL_BATCH_API_KEY"}
# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; dagster-postgres installs psycopg2.
POSTGRES_SCHEME = "postgresql+psycopg2"

# Key paths of Dagster's Helm chart that deploy/helm-values.yaml may use, from the chart's
# helm/dagster/values.schema.json (dagster-io/dagster) and, for the free-form runRetries and
# runMonitoring objects, the keys templates/configmap-instance.yaml reads. `[]` is a list item,
# `*` any key (environment variable names). Add a path only after finding it in the chart.
HELM_CHART_PATHS = frozenset(
    {
        "global",
        "global.postgresqlSecretName",
        "generatePostgresqlPasswordSecret",
        "postgresql",
        "postgresql.enabled",
        "postgresql.postgresqlHost",
        "postgresql.postgresqlUsername",
        "postgresql.postgresqlPassword",
        "postgresql.postgresqlDatabase",
        "postgresql.postgresqlScheme",
        "postgresql.service",
        "postgresql.service.port",
        "dagster-user-deployments",
        "dagster-user-deployments.enabled",
        "dagster-user-deployments.enableSubchart",
        "dagster-user-deployments.deployments",
        "dagster-user-deployments.deployments[].name",
        "dagster-user-deployments.deployments[].image",
        "dagster-user-deployments.deployments[].image.repository",
        "dagster-user-deployments.deployments[].image.tag",
        "dagster-user-deployments.deployments[].image.pullPolicy",
        "dagster-user-deployments.deployments[].dagsterApiGrpcArgs",
        "dagster-user-deployments.deployments[].port",
        "dagster-user-deployments.deployments[].includeConfigInLaunchedRuns",
        "dagster-user-deployments.deployments[].includeConfigInLaunchedRuns.enabled",
        "dagster-user-deployments.deployments[].env",
        "dagster-user-deployments.deployments[].env.*",
        "dagster-user-deployments.deployments[].envSecrets",
        "dagster-user-deployments.deployments[].envSecrets[].name",
        "runLauncher",
        "runLauncher.type",
        "runLauncher.config",
        "runLauncher.config.k8sRunLauncher",
        "runLauncher.config.k8sRunLauncher.envSecrets",
        "runLauncher.config.k8sRunLauncher.envSecrets[].name",
        "runLauncher.config.k8sRunLauncher.envVars",
        "dagsterDaemon",
        "dagsterDaemon.runCoordinator",
        "dagsterDaemon.runCoordinator.enabled",
        "dagsterDaemon.runCoordinator.type",
        "dagsterDaemon.runCoordinator.config",
        "dagsterDaemon.runCoordinator.config.queuedRunCoordinator",
        "dagsterDaemon.runCoordinator.config.queuedRunCoordinator.maxConcurrentRuns",
        "dagsterDaemon.runCoordinator.config.queuedRunCoordinator.tagConcurrencyLimits",
        "dagsterDaemon.runCoordinator.config.queuedRunCoordinator.tagConcurrencyLimits[].key",
        "dagsterDaemon.runCoordinator.config.queuedRunCoordinator.tagConcurrencyLimits[].value",
        "dagsterDaemon.runCoordinator.config.queuedRunCoordinator.tagConcurrencyLimits[].value"
        ".applyLimitPerUniqueValue",
        "dagsterDaemon.runCoordinator.config.queuedRunCoordinator.tagConcurrencyLimits[].limit",
        "dagsterDaemon.runRetries",
        "dagsterDaemon.runRetries.enabled",
        "dagsterDaemon.runRetries.maxRetries",
        "dagsterDaemon.runMonitoring",
        "dagsterDaemon.runMonitoring.enabled",
        "dagsterDaemon.runMonitoring.startTimeoutSeconds",
        "dagsterDaemon.runMonitoring.cancelTimeoutSeconds",
        "dagsterDaemon.runMonitoring.maxResumeRunAttempts",
        "dagsterDaemon.runMonitoring.pollIntervalSeconds",
        "telemetry",
        "telemetry.enabled",
    }
)

INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_]\w*)")
KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_-]{16,}|\bAKIA[0-9A-Z]{16}\b|-----BEGIN [A-Z ]*PRIVATE KEY")


# --- Loading ----------------------------------------------------------------------------------


@cache
def load(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text())


def compose() -> dict[str, Any]:
    return load("docker-compose.yml")


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def instance_yaml() -> dict[str, Any]:
    return load("dagster.yaml")


def helm() -> dict[str, Any]:
    return load("helm-values.yaml")


def launcher_env() -> list[str]:
    return instance_yaml()["run_launcher"]["config"]["env_vars"]


@cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@cache
def package_source() -> str:
    return "\n".join(path.read_text() for path in sorted(PACKAGE.rglob("*.py")))


def read_by_package(name: str) -> bool:
    return f'"{name}"' in package_source() or f"'{name}'" in package_source()


@cache
def botocore_source() -> str:
    spec = importlib.util.find_spec("botocore")
    assert spec is not None and spec.submodule_search_locations, "botocore (s3fs) is not installed"
    folder = Path(next(iter(spec.submodule_search_locations)))
    return "\n".join(path.read_text() for path in sorted(folder.glob("*.py")))


def read_by_botocore(name: str) -> bool:
    return f"'{name}'" in botocore_source() or f'"{name}"' in botocore_source()


def env_refs(node: Any) -> set[str]:
    """The names a Dagster config reads through {env: NAME}."""
    if isinstance(node, dict):
        found = {node["env"]} if set(node) == {"env"} else set()
        return found.union(*(env_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(env_refs(value) for value in node))
    return set()


def interpolations(text: str) -> Iterator[tuple[str, str | None, str]]:
    """(name, operator, argument) of each ${NAME...} / $NAME in a compose value; $$ is literal."""
    for match in INTERPOLATION.finditer(text.replace("$$", "")):
        if match.group(4):
            yield match.group(4), None, ""
        else:
            yield match.group(1), match.group(2), match.group(3) or ""


def may_be_empty(value: Any) -> bool:
    """Whether a compose value can come out empty after interpolation."""
    text = str(value)
    literal = INTERPOLATION.sub("", text.replace("$$", "\0"))
    if literal:
        return False
    return all(
        op not in (":?", ":-") or (op == ":-" and not arg) for _, op, arg in interpolations(text)
    )


def with_defaults(value: str) -> str:
    """A compose value with each ${NAME:-default} replaced by its default."""

    def default(match: re.Match[str]) -> str:
        assert match.group(2) == ":-", f"{match.group(0)} has no default"
        return match.group(3)

    return INTERPOLATION.sub(default, value)


def default_of(value: str) -> str:
    [(_, op, arg)] = list(interpolations(value))
    assert op == ":-", f"{value} has no default"
    return arg


# --- The Dockerfile, parsed line by line (it is ours) -------------------------------------------


@dataclass
class Dockerfile:
    instructions: list[tuple[str, str]]
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    copies: list[tuple[str, str]] = field(default_factory=list)  # (repo path, image path)
    runs: list[str] = field(default_factory=list)
    workdir: str = "/"

    def expand(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: self.env.get(m.group(1), m.group(0)), text)

    def one(self, instruction: str) -> str:
        [args] = [args for name, args in self.instructions if name == instruction]
        return args

    def container_path(self, repo_path: str) -> str:
        """Where a file of the repository lands in the image."""
        for source, target in self.copies:
            if repo_path == source or repo_path.startswith(source + "/"):
                return str(PurePosixPath(target) / repo_path[len(source) :].lstrip("/"))
        raise AssertionError(f"{repo_path} is not copied into the image")

    def repo_path(self, container_path: str) -> Path:
        """The file of the repository that the image has at `container_path`."""
        for source, target in self.copies:
            if container_path == target or container_path.startswith(target + "/"):
                return ROOT / source / container_path[len(target) :].lstrip("/")
        raise AssertionError(f"nothing is copied to {container_path}")

    def copied_to(self, container_path: str) -> bool:
        return any(
            container_path == target or container_path.startswith(target + "/")
            for _, target in self.copies
        )


@cache
def dockerfile() -> Dockerfile:
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1].strip() + " "
            continue
        name, _, args = (current + line).partition(" ")
        instructions.append((name.upper(), args.strip()))
        current = ""
    assert not current, "the Dockerfile ends in a line continuation"
    parsed = Dockerfile(instructions)
    for name, args in instructions:
        if name == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                parsed.env[key] = value
        elif name == "ARG":
            key, _, value = args.partition("=")
            parsed.args[key] = value
        elif name == "WORKDIR":
            parsed.workdir = str(PurePosixPath(parsed.workdir) / parsed.expand(args))
        elif name == "COPY":
            *sources, raw_dest = shlex.split(args)
            dest = PurePosixPath(parsed.workdir) / parsed.expand(raw_dest)
            into_folder = len(sources) > 1 or raw_dest.endswith("/")
            for source in sources:
                target = dest / PurePosixPath(source).name if into_folder else dest
                parsed.copies.append((source.rstrip("/"), str(target)))
        elif name == "RUN":
            parsed.runs.append(parsed.expand(args))
    return parsed


def exposed_ports() -> set[int]:
    return {int(port.split("/")[0]) for port in dockerfile().one("EXPOSE").split()}


@cache
def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored_by_docker(path: str) -> bool:
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch(prefix, pattern.removeprefix("**/")) or fnmatch(prefix, pattern)
        for pattern in dockerignore()
        for prefix in prefixes
    )


# --- Commands, parsed by the real CLIs -----------------------------------------------------------


def parse_click(command: click.Command, args: list[str]) -> dict[str, Any]:
    """The parameters a click CLI makes of `args` (unknown or malformed options raise)."""
    args = list(args)
    while isinstance(command, click.Group):
        name = args.pop(0)
        sub = command.get_command(click.Context(command), name)
        assert sub is not None, f"no subcommand {name!r}"
        command = sub
    return command.make_context(command.name, args).params


def command_of(name: str) -> list[str]:
    command = service(name)["command"]
    return command if isinstance(command, list) else shlex.split(command)


def in_repo(args: list[str]) -> list[str]:
    """The arguments with each image path of a copied file replaced by the repository's file."""
    image = dockerfile()
    return [str(image.repo_path(arg)) if image.copied_to(arg) else arg for arg in args]


def dagster_params(name: str) -> dict[str, Any]:
    command = command_of(name)
    programs = {
        "dagster": dagster_cli,
        "dagster-webserver": webserver_cli,
        "dagster-daemon": daemon_cli,
    }
    return parse_click(programs[command[0]], in_repo(command[1:]))


def code_server_port() -> int:
    return dagster_params(CODE_SERVICE)["port"]


def workspace_path(name: str) -> str:
    [path] = dagster_params(name)["workspace"]
    return path


# --- Every file parses -------------------------------------------------------------------------


def test_the_deploy_folder_has_every_file() -> None:
    for name in (*YAML_FILES, "Dockerfile", ".env.example"):
        assert (DEPLOY / name).is_file(), name
    assert (ROOT / ".dockerignore").is_file()


@pytest.mark.parametrize("name", YAML_FILES)
def test_every_yaml_file_parses_to_a_mapping(name: str) -> None:
    assert isinstance(yaml.safe_load((DEPLOY / name).read_text()), dict)


def test_no_yaml_file_in_deploy_is_left_unchecked() -> None:
    found = {path.name for path in DEPLOY.iterdir() if path.suffix in (".yaml", ".yml")}
    assert found == set(YAML_FILES)


# --- deploy/dagster.yaml ------------------------------------------------------------------------


def instance_config_errors(folder: Path) -> list[str]:
    """Errors from Dagster's instance schema, then from each configured class's own schema."""
    try:
        config, custom_class = dagster_instance_config(str(folder))
    except DagsterInvalidConfigError as error:
        return [str(error)]
    errors = [] if custom_class is None else ["a custom instance class"]
    for key, entry in config.items():
        if not (isinstance(entry, dict) and {"module", "class"} <= set(entry)):
            continue
        klass: Any = class_from_code_pointer(entry["module"], entry["class"])
        config_type = resolve_to_config_type(klass.config_type())
        result = process_config(config_type, entry.get("config") or {})
        errors += [f"{key}: {error.message}" for error in result.errors or []]
    return errors


def test_dagster_yaml_validates_against_dagsters_instance_schema(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", f"{POSTGRES_SCHEME}://u:p@postgres:5432/dagster")
    assert instance_config_errors(DEPLOY) == []


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("run_coordinator", "config", "tag_concurrency_limits", 0, "limit"), "one"),
        (("run_launcher", "config", "network"), {"not": "a string"}),
        (("run_retries", "max_retries"), "three"),
        (("run_monitoring", "no_such_setting"), 1),
    ],
)
def test_the_instance_schema_check_catches_a_broken_dagster_yaml(
    path: tuple[Any, ...], bad: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", f"{POSTGRES_SCHEME}://u:p@postgres:5432/dagster")
    broken = copy.deepcopy(instance_yaml())
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(broken))
    assert instance_config_errors(tmp_path) != []


def test_dagster_yaml_stores_everything_in_postgres_from_the_environment() -> None:
    for key in ("run_storage", "event_log_storage", "schedule_storage"):
        entry = instance_yaml()[key]
        assert entry["module"].startswith("dagster_postgres."), key
        assert entry["class"].startswith("Postgres"), key
        assert entry["config"] == {"postgres_url": {"env": "DAGSTER_POSTGRES_URL"}}, key
    assert "storage" not in instance_yaml()


def test_dagster_yaml_queues_runs_with_one_run_per_pipeline() -> None:
    coordinator = instance_yaml()["run_coordinator"]
    assert coordinator["class"] == "QueuedRunCoordinator"
    limits = coordinator["config"]["tag_concurrency_limits"]
    # The tag the sensor puts on download runs, taken from the code.
    assert {"key": PIPELINE_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
    assert coordinator["config"]["max_concurrent_runs"] >= 1


def test_dagster_yaml_retries_failed_runs_and_monitors_them() -> None:
    retries = instance_yaml()["run_retries"]
    assert retries["enabled"] is True
    assert retries["max_retries"] >= 1
    assert retries.get("retry_on_asset_or_op_failure", True) is True
    monitoring = instance_yaml()["run_monitoring"]
    assert monitoring["enabled"] is True
    assert monitoring["start_timeout_seconds"] > 0


def test_dagster_yaml_launches_each_run_in_a_docker_container() -> None:
    launcher = instance_yaml()["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_docker", "DockerRunLauncher")
    assert launcher["config"]["network"]
    assert instance_yaml()["telemetry"] == {"enabled": False}


# --- Environment variables ----------------------------------------------------------------------


def test_runs_get_every_variable_they_need() -> None:
    assert set(launcher_env()) >= REQUIRED_RUN_ENV
    assert len(launcher_env()) == len(set(launcher_env()))
    assert not set(launcher_env()) & OPTIONAL_RUN_ENV, "optional names are opt-in, see the comment"


def test_each_variable_passed_to_runs_is_read_by_the_code_the_instance_or_botocore() -> None:
    instance_reads = env_refs(instance_yaml())
    for name in launcher_env():
        assert read_by_package(name) or name in instance_reads or name in BOTOCORE_ENV, name


def test_the_variable_lists_of_this_test_name_what_their_readers_read() -> None:
    for name in REQUIRED_RUN_ENV - {"DAGSTER_POSTGRES_URL"} | OPTIONAL_RUN_ENV | SENSOR_ENV:
        assert read_by_package(name), f"batch_assets/ no longer reads {name}"
    assert env_refs(instance_yaml()) == {"DAGSTER_POSTGRES_URL"}
    for name in BOTOCORE_ENV:
        assert read_by_botocore(name), f"botocore no longer reads {name}"
    assert read_by_package("LOCAL_BATCH_API_KEY")


@pytest.mark.parametrize("name", [*LAUNCHING_SERVICES, CODE_SERVICE])
def test_each_run_variable_is_set_and_non_empty_where_runs_are_launched(name: str) -> None:
    environment = service(name)["environment"]
    for variable in launcher_env():
        assert variable in environment, f"{name} lacks {variable}: the launcher would raise"
        assert not may_be_empty(environment[variable]), f"{name}: {variable} may be empty"


def test_the_code_location_gets_the_sensor_settings_and_announces_its_image() -> None:
    environment = service(CODE_SERVICE)["environment"]
    for variable in SENSOR_ENV:
        assert not may_be_empty(environment[variable]), variable
        assert int(with_defaults(environment[variable])) > 0
    assert environment["DAGSTER_CURRENT_IMAGE"] == service(CODE_SERVICE)["image"]
    # Dagster's code server reports this variable as the image runs are launched in.
    code_server_cli = Path(importlib.util.find_spec("dagster._cli.code_server").origin or "")
    assert "DAGSTER_CURRENT_IMAGE" in code_server_cli.read_text()


def test_the_empty_value_check_tells_empty_from_set() -> None:
    assert may_be_empty("${A}") and may_be_empty("${A:-}") and may_be_empty("$A")
    assert not may_be_empty("${A:-x}") and not may_be_empty("${A:?set A}")
    assert not may_be_empty("x${A}") and not may_be_empty(30)


def test_the_postgres_url_names_a_driver_that_is_installed() -> None:
    url = with_defaults(service("daemon")["environment"]["DAGSTER_POSTGRES_URL"])
    parsed = sqlalchemy.engine.make_url(url)
    assert parsed.drivername == POSTGRES_SCHEME
    parsed.get_dialect().import_dbapi()  # raises when the driver is missing
    assert parsed.host == "postgres" and "postgres" in compose()["services"]
    postgres = service("postgres")["environment"]
    raw = service("daemon")["environment"]["DAGSTER_POSTGRES_URL"]
    for key in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert postgres[key] in raw, f"the URL and the postgres service disagree on {key}"


def test_the_app_uses_the_bundled_minio_and_its_bucket_by_default() -> None:
    run_env = service("daemon")["environment"]
    minio = service("minio")["environment"]
    assert default_of(run_env["AWS_ACCESS_KEY_ID"]) == default_of(minio["MINIO_ROOT_USER"])
    assert default_of(run_env["AWS_SECRET_ACCESS_KEY"]) == default_of(minio["MINIO_ROOT_PASSWORD"])
    assert default_of(run_env["AWS_ENDPOINT_URL"]).startswith("http://minio:")
    bucket = default_of(service("minio-create-bucket")["environment"]["S3_BUCKET"])
    assert default_of(run_env[STORAGE_DIR_VARIABLE]).startswith(f"s3://{bucket}/")
    for credentials in (run_env["AWS_SECRET_ACCESS_KEY"], minio["MINIO_ROOT_PASSWORD"]):
        assert "local-dev-only" in default_of(credentials), "dev placeholders must say so"


def test_no_real_secret_is_written_into_the_deploy_files() -> None:
    shipped = [*YAML_FILES, "Dockerfile", ".env.example"]
    for path in [*(DEPLOY / name for name in shipped), ROOT / ".dockerignore", README]:
        assert not KEY_LIKE.search(path.read_text()), path
    for name in (CODE_SERVICE, *LAUNCHING_SERVICES):
        [(variable, op, _)] = list(interpolations(service(name)["environment"]["OPENAI_API_KEY"]))
        assert (variable, op) == ("OPENAI_API_KEY", ":?"), "the key comes from the environment"
    assert ignored_by_docker("deploy/.env") and ignored_by_docker(".env")


def test_every_compose_variable_is_in_the_env_example() -> None:
    used = {name for name, _, _ in interpolations((DEPLOY / "docker-compose.yml").read_text())}
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert used == listed


# --- Dockerfile, .dockerignore and the compose services -----------------------------------------


def test_the_image_is_python_311_slim_as_a_non_root_numeric_user() -> None:
    assert dockerfile().one("FROM") == "python:3.11-slim"
    assert pyproject()["project"]["requires-python"] == ">=3.11"
    user = dockerfile().one("USER").split(":")[0]
    assert user.isdigit() and int(user) != 0, "runAsNonRoot needs a numeric, non-root USER"


def test_the_image_installs_the_project_editable_with_every_extra() -> None:
    extras = dockerfile().args["EXTRAS"].split(",")
    assert set(extras) == set(pyproject()["project"]["optional-dependencies"]) - {"dev"}
    assert any(
        re.search(r'pip install (--editable|-e) "\.\[\$\{EXTRAS\}\]"', r) for r in dockerfile().runs
    )
    # The package stays beside data/ in WORKDIR (see the next test), installed from there.
    workdir = dockerfile().workdir
    assert dockerfile().container_path("batch_assets") == f"{workdir}/batch_assets"
    assert dockerfile().container_path("data") == f"{workdir}/data"
    assert dockerfile().container_path("pyproject.toml") == f"{workdir}/pyproject.toml"


def test_the_package_finds_data_beside_itself_as_in_the_image() -> None:
    # PROJECT_ROOT is the folder above the package and data/ is found there, so a copy installed
    # into site-packages would look for site-packages/data: hence the editable install above.
    assert project.PROJECT_ROOT == PACKAGE.parent == ROOT
    assert project.DATA_DIR == project.PROJECT_ROOT / "data"


def test_the_image_carries_the_instance_config_in_dagster_home() -> None:
    home = dockerfile().env["DAGSTER_HOME"]
    assert home == "/opt/dagster/dagster_home"
    assert dockerfile().container_path("deploy/dagster.yaml") == f"{home}/dagster.yaml"


def test_every_copied_file_exists_and_is_in_the_build_context() -> None:
    for source, _ in dockerfile().copies:
        assert (ROOT / source).exists(), source
        assert not ignored_by_docker(source), f"{source} is excluded by .dockerignore"


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    for path in (".venv", "data/generated", ".dagster_home", ".local_api_state", ".pytest_cache"):
        assert ignored_by_docker(path), path
    for path in (".ruff_cache", ".hypothesis", "batch_assets/__pycache__", "batch_assets.egg-info"):
        assert ignored_by_docker(path), path
    assert not ignored_by_docker("data/product_reviews.csv")


def shell_commands(run: str) -> list[list[str]]:
    return [shlex.split(part) for part in re.split(r"&&|;", run) if part.strip()]


def test_the_users_directories_are_made_writable_in_the_image() -> None:
    commands = [command for run in dockerfile().runs for command in shell_commands(run)]
    made = {arg for command in commands if command[0] == "mkdir" for arg in command[1:]}
    owned: set[str] = set()
    for command in (c for c in commands if c[0] == "chown"):
        owner, *paths = [arg for arg in command[1:] if not arg.startswith("-")]
        assert owner == dockerfile().one("USER"), "chown to the user the image runs as"
        owned |= set(paths)
    logs = instance_yaml()["compute_logs"]["config"]["base_dir"]
    state = str(local_api_namespace().state_dir)
    home = dockerfile().env["DAGSTER_HOME"]
    for path in (logs, state):
        assert path in made, f"{path} is not created"
        assert any(path == p or path.startswith(p + "/") for p in owned), f"{path} is not owned"
    assert home in owned, "DAGSTER_HOME (local artifacts) must be writable"


def test_the_app_services_run_the_image_built_from_the_dockerfile() -> None:
    image = service(CODE_SERVICE)["image"]
    using_it = {name for name, spec in compose()["services"].items() if spec.get("image") == image}
    assert using_it == APP_SERVICES
    for name in APP_SERVICES:
        build = service(name)["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert context == ROOT
        assert (context / build["dockerfile"]).resolve() == (DEPLOY / "Dockerfile").resolve()
    assert json.loads(dockerfile().one("CMD")) == command_of(CODE_SERVICE), "default: code server"


def test_compose_runs_postgres_16_minio_and_a_bucket_before_the_app() -> None:
    assert service("postgres")["image"] == "postgres:16"
    assert service("minio")["image"].startswith("minio/minio:")
    assert "minio" in service("minio-create-bucket")["depends_on"]
    for name in (CODE_SERVICE, *LAUNCHING_SERVICES):
        depends = service(name)["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
    depends = service(CODE_SERVICE)["depends_on"]
    assert depends["minio-create-bucket"]["condition"] == "service_completed_successfully"
    for name in LAUNCHING_SERVICES:
        assert service(name)["depends_on"][CODE_SERVICE]["condition"] == "service_healthy"
    assert service(LOCAL_API_SERVICE)["profiles"] == ["local-api"]


def test_the_launching_services_reach_the_docker_engine() -> None:
    for name in LAUNCHING_SERVICES:
        assert "/var/run/docker.sock:/var/run/docker.sock" in service(name)["volumes"], name
        [group] = service(name)["group_add"]
        assert [op for _, op, _ in interpolations(group)] == [":?"], "DOCKER_GID is required"


def test_the_compose_network_is_the_one_the_run_launcher_joins() -> None:
    network = instance_yaml()["run_launcher"]["config"]["network"]
    [(key, spec)] = compose()["networks"].items()
    assert spec["name"] == network, "a fixed name, without the compose project prefix"
    for name, spec in compose()["services"].items():
        assert spec["networks"] == [key], name


def test_compute_logs_go_to_a_volume_the_webserver_and_every_run_share() -> None:
    base_dir = instance_yaml()["compute_logs"]["config"]["base_dir"]
    assert base_dir.startswith(dockerfile().env["DAGSTER_HOME"] + "/")
    [mount] = instance_yaml()["run_launcher"]["config"]["container_kwargs"]["volumes"]
    volume_name, path = mount.split(":")
    assert path == base_dir
    [key] = [k for k, v in compose()["volumes"].items() if (v or {}).get("name") == volume_name]
    for name in LAUNCHING_SERVICES:
        assert f"{key}:{base_dir}" in service(name)["volumes"], name


# --- Commands and ports ---------------------------------------------------------------------------


def test_the_code_server_command_serves_the_projects_code_location() -> None:
    params = dagster_params(CODE_SERVICE)
    assert params["module_name"] == pyproject()["tool"]["dagster"]["module_name"]
    assert params["location_name"] == pyproject()["tool"]["dagster"]["code_location_name"]
    assert params["host"] == "0.0.0.0"
    health = service(CODE_SERVICE)["healthcheck"]["test"]
    assert health[:2] == ["CMD", "dagster"]
    assert parse_click(dagster_cli, health[2:])["port"] == code_server_port()


def test_the_workspace_points_at_the_code_server() -> None:
    [entry] = load("workspace.yaml")["load_from"]
    server = entry["grpc_server"]
    assert server["host"] == CODE_SERVICE
    assert server["port"] == code_server_port()
    assert server["location_name"] == pyproject()["tool"]["dagster"]["code_location_name"]


def test_the_webserver_and_daemon_load_the_workspace_copied_into_the_image() -> None:
    for name in LAUNCHING_SERVICES:
        assert Path(workspace_path(name)) == DEPLOY / "workspace.yaml", name


def test_the_ports_agree_across_compose_the_dockerfile_and_helm() -> None:
    grpc = code_server_port()
    assert grpc in exposed_ports()
    [deployment] = helm()["dagster-user-deployments"]["deployments"]
    assert deployment["port"] == grpc
    web = dagster_params("webserver")["port"]
    assert dagster_params("webserver")["host"] == "0.0.0.0"
    assert [int(mapping.split(":")[-1]) for mapping in service("webserver")["ports"]] == [web]
    assert web in exposed_ports()
    assert local_api_namespace().port in exposed_ports()


def local_api_namespace() -> Any:
    command = command_of(LOCAL_API_SERVICE)
    assert command[:3] == ["python", "-m", "batch_assets.local_api"]
    return local_api_args(command[3:])


def test_the_local_api_service_listens_where_the_docs_point_and_keeps_its_state() -> None:
    args = local_api_namespace()
    assert args.host == "0.0.0.0"
    url = f"http://{LOCAL_API_SERVICE}:{args.port}/v1"
    assert url in production_section() and url in ENV_EXAMPLE.read_text()
    state_mounts = [v.split(":")[1] for v in service(LOCAL_API_SERVICE)["volumes"]]
    assert str(args.state_dir) in state_mounts
    [(variable, _, _)] = interpolations(
        service(LOCAL_API_SERVICE)["environment"]["LOCAL_BATCH_API_KEY"]
    )
    assert variable == "OPENAI_API_KEY", "the local API requires the key the pipelines send"


# --- helm-values.yaml ---------------------------------------------------------------------------


def key_paths(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path
            yield from key_paths(value, path)
    elif isinstance(node, list):
        for item in node:
            yield from key_paths(item, f"{prefix}[]")


def in_chart(path: str) -> bool:
    parts = path.split(".")
    return any(
        len(known) == len(parts) and all(k in ("*", p) for k, p in zip(known, parts, strict=True))
        for known in (chart_path.split(".") for chart_path in HELM_CHART_PATHS)
    )


def test_helm_values_use_only_key_paths_of_the_chart() -> None:
    unknown = [path for path in key_paths(helm()) if not in_chart(path)]
    assert unknown == []


def test_the_key_path_check_rejects_an_invented_key() -> None:
    assert not in_chart("dagsterDaemon.runRetries.maxRetry")
    assert not in_chart("dagster-user-deployments.deployments[].grpcArgs")
    assert in_chart("dagster-user-deployments.deployments[].env.ANY_NAME")


def test_helm_deploys_the_project_as_a_user_code_deployment() -> None:
    user_deployments = helm()["dagster-user-deployments"]
    assert user_deployments["enabled"] is True and user_deployments["enableSubchart"] is True
    [deployment] = user_deployments["deployments"]
    module = pyproject()["tool"]["dagster"]["module_name"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", module]
    assert parse_click(dagster_cli, ["api", "grpc", *deployment["dagsterApiGrpcArgs"]])
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert set(deployment["image"]) == {"repository", "tag", "pullPolicy"}
    assert all(isinstance(value, str) for value in deployment["env"].values()), "strings only"


def test_helm_uses_an_external_postgres_through_psycopg2() -> None:
    postgresql = helm()["postgresql"]
    assert postgresql["enabled"] is False and postgresql["postgresqlHost"]
    assert postgresql["postgresqlScheme"] == POSTGRES_SCHEME
    sqlalchemy.engine.make_url(f"{POSTGRES_SCHEME}://h/db").get_dialect().import_dbapi()
    assert helm()["generatePostgresqlPasswordSecret"] is False


def test_helm_queues_retries_and_monitors_like_the_compose_instance() -> None:
    daemon = helm()["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    assert coordinator["enabled"] is True and coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert queued["tagConcurrencyLimits"] == [
        {"key": PIPELINE_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    ]
    compose_coordinator = instance_yaml()["run_coordinator"]["config"]
    assert queued["maxConcurrentRuns"] == compose_coordinator["max_concurrent_runs"]
    assert daemon["runRetries"] == {
        "enabled": True,
        "maxRetries": instance_yaml()["run_retries"]["max_retries"],
    }
    assert daemon["runMonitoring"]["enabled"] is True
    monitoring = instance_yaml()["run_monitoring"]
    assert daemon["runMonitoring"]["maxResumeRunAttempts"] == monitoring["max_resume_run_attempts"]
    assert helm()["telemetry"] == {"enabled": False}


def documented_secrets() -> dict[str, set[str]]:
    """Secret name -> keys, from the `kubectl create secret generic` lines in the comments."""
    secrets: dict[str, set[str]] = {}
    current = None
    for line in (DEPLOY / "helm-values.yaml").read_text().splitlines():
        if not line.lstrip().startswith("#"):
            continue
        if found := re.search(r"create secret generic (\S+)", line):
            current = secrets.setdefault(found.group(1), set())
        if current is not None:
            current.update(re.findall(r"--from-literal=([\w-]+)=", line))
    return secrets


def test_helm_runs_get_the_same_secrets_and_settings_as_the_code_location() -> None:
    [deployment] = helm()["dagster-user-deployments"]["deployments"]
    launcher = helm()["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    k8s = launcher["config"]["k8sRunLauncher"]
    assert k8s["envSecrets"] == deployment["envSecrets"]
    run_env = dict(pair.split("=", 1) for pair in k8s["envVars"])
    assert run_env == {k: v for k, v in deployment["env"].items() if k not in SENSOR_ENV}
    secrets = documented_secrets()
    keys: set[str] = set()
    for secret in deployment["envSecrets"]:
        assert secret["name"] in secrets, f"{secret['name']} is not documented"
        keys |= secrets[secret["name"]]
    assert keys >= {"OPENAI_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert secrets[helm()["global"]["postgresqlSecretName"]] == {"postgresql-password"}
    for name in keys | set(deployment["env"]):
        assert read_by_package(name) or name in BOTOCORE_ENV, name
    assert deployment["env"][STORAGE_DIR_VARIABLE].startswith(("s3://", "gs://", "az://"))


# --- The README ---------------------------------------------------------------------------------


def test_the_readme_names_every_variable_a_deployment_sets() -> None:
    text = production_section()
    [deployment] = helm()["dagster-user-deployments"]["deployments"]
    names = (
        set(launcher_env())
        | OPTIONAL_RUN_ENV
        | SENSOR_ENV
        | PLATFORM_ENV
        | {name for name, _, _ in interpolations((DEPLOY / "docker-compose.yml").read_text())}
        | set().union(*(set(service(n).get("environment", {})) for n in compose()["services"]))
        | set(deployment["env"])
        | set().union(*documented_secrets().values()) - {"postgresql-password"}
    )
    missing = sorted(name for name in names if f"`{name}`" not in text)
    assert missing == []


def test_the_readme_covers_the_three_ways_and_what_was_not_run() -> None:
    text = production_section()
    assert text.startswith("## Production")
    for needle in ("make run", "make test", "docker compose", "helm", "Dagster+"):
        assert needle in text, needle
    assert "Not run" in text and "Checked statically" in text
