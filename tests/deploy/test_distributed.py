"""The deployment as separate processes, as its containers run: one example end to end.

A code server (`dagster api grpc`), `dagster-daemon run` and `dagster-webserver` each run in their
own empty folder (working directory, TMPDIR, HOME and DAGSTER_HOME), on the instance of
`deploy/dagster.yaml`: runs and event logs in a real PostgreSQL, files in a real S3 server (moto),
batches on the local Batch API. Each run is a process of its own too, in a fresh folder
(`process_run_launcher.py`). Nothing is shared but Postgres, the bucket and the Batch API.

The example is launched as "Materialize all" in the UI launches it; the daemon is killed (SIGKILL)
while its batch runs and a new one takes over. Then nothing was submitted or downloaded twice,
every file is in the bucket and none on any process's disk, the runs are in Postgres, and the
results are those of the same example materialized on local disk.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml
from dagster._core.launcher.base import WorkerStatus
from dagster._grpc.client import DagsterGrpcClient
from dagster_graphql import DagsterGraphQLClient

from batch_assets.project import GENERATED_DIR, PROJECT_ROOT
from tests.deploy.process_run_launcher import (
    FOLDER_TAG,
    PID_TAG,
    ProcessRunLauncher,
    process_start_time,
)
from tests.local_api_server import LocalBatchAPI, wait_for
from tests.services import die_with_parent, free_port, read_log, stop_process
from tests.services.postgres import PostgresServer
from tests.services.s3 import S3Server

GROUP = "product_reviews"
PIPELINE = "review_sentiment"
LOCATION = "batch_assets"
REPOSITORY = "__repository__"
API_KEY = "sk-deploy-test-0123456789"
DEPLOY_DIR = PROJECT_ROOT / "deploy"
# deploy/dagster.yaml names paths inside the image; here each process's own DAGSTER_HOME.
CONTAINER_DAGSTER_HOME = "/opt/dagster/dagster_home"
STARTUP_TIMEOUT = 120.0
PIPELINE_TIMEOUT = 240.0
# Slow enough that the batch is in flight while the daemon is killed and replaced; the test
# speeds it up (to 0) once the new daemon beats.
SLOW_SECONDS_PER_REQUEST = 2.0
# Columns that differ between any two runs of the same example: ids the Batch API makes.
PER_RUN_COLUMNS = {"batch_id", "batch_request_id", "request_id"}
EXAMPLE_ASSETS = [
    f"{PIPELINE}_{name}" for name in ("requests", "batch", "output", "errors", "results")
]
DOWNLOAD_KEYS = [f"{PIPELINE}_output", f"{PIPELINE}_errors", f"{PIPELINE}_results"]

GROUP_ASSETS = """
query GroupAssets($group: AssetGroupSelector!) {
  assetNodes(group: $group) {
    assetKey { path }
    assetChecksOrError { ... on AssetChecks { checks { name } } }
  }
}
"""
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}
"""
RUNS = """
query Runs {
  runsOrError {
    ... on Runs {
      results { runId status tags { key value } assetSelection { path } }
    }
  }
}
"""
ASSET_EVENTS = """
query Events($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    ... on Asset {
      assetMaterializations {
        runId
        timestamp
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on JsonMetadataEntry { jsonString }
        }
      }
      assetObservations { runId timestamp }
    }
  }
}
"""
DAEMONS = """
query Daemons {
  instance { daemonHealth { allDaemonStatuses { daemonType healthy lastHeartbeatTime } } }
}
"""
LOCATIONS = """
query Locations {
  workspaceOrError {
    ... on Workspace {
      locationEntries { name locationOrLoadError { __typename ... on PythonError { message } } }
    }
  }
}
"""


@dataclass
class Service:
    """One deployment process, in its own folder."""

    name: str
    folder: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    killed: bool = False

    def log(self) -> str:
        return read_log(self.log_path)


@dataclass
class Deployment:
    """The processes of one deployment, each started in a folder of its own."""

    root: Path
    env: dict[str, str]
    code_port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    services: list[Service] = field(default_factory=list)

    def instance_yaml(self, home: Path) -> str:
        """deploy/dagster.yaml with its paths in `home` and the test's run launcher."""
        text = (DEPLOY_DIR / "dagster.yaml").read_text()
        config = yaml.safe_load(text.replace(CONTAINER_DAGSTER_HOME, str(home)))
        launcher = config["run_launcher"]
        assert (launcher["module"], launcher["class"]) == ("dagster_docker", "DockerRunLauncher")
        # Docker cannot run here: the one section replaced. The test launcher starts each run as
        # a local process in a fresh folder, passing on the same env_vars as DockerRunLauncher.
        config["run_launcher"] = {
            "module": "tests.deploy.process_run_launcher",
            "class": "ProcessRunLauncher",
            "config": {"env_vars": list(launcher["config"]["env_vars"])},
        }
        return yaml.safe_dump(config, sort_keys=False)

    def workspace_yaml(self) -> str:
        """deploy/workspace.yaml with the code server's host and port here."""
        config = yaml.safe_load((DEPLOY_DIR / "workspace.yaml").read_text())
        for entry in config["load_from"]:
            entry["grpc_server"].update(host="127.0.0.1", port=self.code_port)
        return yaml.safe_dump(config, sort_keys=False)

    def start(self, name: str, *args: str) -> Service:
        """Start `args` in a new empty folder: work/ (cwd), tmp/ (TMPDIR), dagster_home/."""
        number = sum(service.name == name for service in self.services) + 1
        folder = self.root / "processes" / f"{name}-{number}"
        home = folder / "dagster_home"
        for sub in ("work", "tmp", "dagster_home"):
            (folder / sub).mkdir(parents=True)
        (home / "dagster.yaml").write_text(self.instance_yaml(home))
        (home / "workspace.yaml").write_text(self.workspace_yaml())
        log_path = self.root / "logs" / f"{name}-{number}.log"
        log_path.parent.mkdir(exist_ok=True)
        env = {
            **self.env,
            "TMPDIR": str(folder / "tmp"),
            "HOME": str(folder),
            "DAGSTER_HOME": str(home),
        }
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                list(args),
                cwd=folder / "work",
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        service = Service(name, folder, process, log_path)
        self.services.append(service)
        return service

    def start_code_server(self) -> Service:
        return self.start(
            "code-server",
            _bin("dagster"),
            "api",
            "grpc",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.code_port),
            "-m",
            "batch_assets.definitions",
            "--location-name",
            LOCATION,
        )

    def start_daemon(self) -> Service:
        return self.start(
            "daemon", _bin("dagster-daemon"), "run", "-w", "../dagster_home/workspace.yaml"
        )

    def start_webserver(self) -> Service:
        return self.start(
            "webserver",
            _bin("dagster-webserver"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.web_port),
            "-w",
            "../dagster_home/workspace.yaml",
        )

    def fail_with_logs(self, message: str) -> None:
        """Fail with the tail of every process's log and every run process's log."""
        logs = [(f"{s.name} ({s.log_path})", s.log()) for s in self.services]
        logs += [
            (f"run process ({path})", read_log(path))
            for path in sorted(self.root.glob("processes/daemon-*/tmp/run-*.log"))
        ]
        pytest.fail("\n".join([message, *(f"--- {name}\n{text}" for name, text in logs)]))

    def check_alive(self) -> None:
        for service in self.services:
            if not service.killed and service.process.poll() is not None:
                self.fail_with_logs(f"{service.name} exited with {service.process.returncode}")

    def stop(self) -> None:
        for service in reversed(self.services):
            if service.process.poll() is None:
                os.killpg(service.process.pid, signal.SIGTERM)
            stop_process(service.process, signal.SIGKILL, timeout=20)


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    assert path.exists(), path
    return str(path)


def _graphql(client: DagsterGraphQLClient, query: str, variables: dict | None = None) -> dict:
    return client._execute(query, variables or {})


def _asset_events(client: DagsterGraphQLClient, key: str) -> dict[str, list[dict]]:
    found = _graphql(client, ASSET_EVENTS, {"key": {"path": [key]}})["assetOrError"]
    return {
        "materializations": found.get("assetMaterializations", []),
        "observations": found.get("assetObservations", []),
    }


def _runs(client: DagsterGraphQLClient) -> list[dict]:
    return _graphql(client, RUNS)["runsOrError"]["results"]


def _metadata(event: dict) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for entry in event["metadataEntries"]:
        if "intValue" in entry:
            values[entry["label"]] = entry["intValue"]
        elif "jsonString" in entry:
            values[entry["label"]] = json.loads(entry["jsonString"])
    return values


def _tags(run: dict) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["tags"]}


def _files_on_disk(folders: list[Path]) -> list[Path]:
    return sorted({path for folder in folders for path in folder.rglob("*") if path.is_file()})


def _expected_on_disk(path: Path, run_folders: list[Path]) -> bool:
    """Instance configuration, compute logs and the run processes' own logs; nothing else."""
    if path.parent.name == "dagster_home" and path.name in {"dagster.yaml", "workspace.yaml"}:
        return True
    if path.suffix == ".log" and path.with_suffix("") in run_folders:
        return True
    in_a_run = any(path.is_relative_to(folder) for folder in run_folders)
    return in_a_run and path.parent.name == "compute_logs"


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in (folder.rglob("*") if folder.exists() else [])
        if path.is_file()
    }


def materialize_on_local_disk(storage_dir: str, instance_dir: str, out: str) -> None:
    """Materialize the example in this process with files in `storage_dir`; save the results.

    Run by the test in a child process whose environment points the project at a second local
    Batch API, so the storage and resources are read fresh as the example's modules import.
    """
    started = time.monotonic()
    from batch_assets.definitions import defs
    from tests.pipeline.harness import Harness, shared_instance

    definitions = defs()
    graph = definitions.resolve_asset_graph()
    keys = [key for key in graph.get_all_asset_keys() if graph.get(key).group_name == GROUP]
    harness = Harness(definitions, shared_instance(Path(instance_dir)))
    harness.materialize(keys)
    results_key = dg.AssetKey(f"{PIPELINE}_results")
    if harness.instance.get_latest_materialization_event(results_key) is None:
        harness.run_until_downloaded(f"{PIPELINE}_output")
    [table] = Path(storage_dir).rglob(f"{PIPELINE}_results.parquet")
    pl.read_parquet(table).write_parquet(out)
    Path(f"{out}.seconds").write_text(f"{time.monotonic() - started:.1f}")


@dataclass
class LocalDiskRun:
    """The example materialized in a child process on local disk, on a Batch API of its own."""

    root: Path
    api: LocalBatchAPI | None = None
    process: subprocess.Popen[bytes] | None = None
    seconds: float = 0.0  # how long the child took, imports included

    @property
    def out(self) -> Path:
        return self.root / "results.parquet"

    def start(self) -> None:
        self.api = LocalBatchAPI(self.root / "api-state", api_key=API_KEY).start()
        storage, instance = self.root / "generated", self.root / "instance"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(PROJECT_ROOT),
            "TMPDIR": str(self.root),
            "HOME": str(self.root),
            "OPENAI_API_KEY": API_KEY,
            "OPENAI_BASE_URL": self.api.base_url,
            "BATCH_ASSETS_STORAGE_DIR": str(storage),
        }
        code = (
            "from tests.deploy.test_distributed import materialize_on_local_disk as m; "
            f"m({str(storage)!r}, {str(instance)!r}, {str(self.out)!r})"
        )
        with (self.root / "local-disk-run.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )

    def results(self) -> pl.DataFrame:
        assert self.process is not None
        returncode = self.process.wait(timeout=PIPELINE_TIMEOUT)
        assert returncode == 0, read_log(self.root / "local-disk-run.log")
        self.seconds = float(Path(f"{self.out}.seconds").read_text())
        return pl.read_parquet(self.out)

    def stop(self) -> None:
        stop_process(self.process, signal.SIGKILL)
        if self.api is not None:
            self.api.stop()


def _kill_processes_in(root: Path) -> None:
    """SIGKILL what this test started that still runs in `root` (run workers, their steps).

    Runs are started by the daemon in sessions of their own, as containers, so they outlive it;
    after a failure they could linger. They are found by their working directory.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd.is_relative_to(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


@pytest.fixture
def local_disk_run(tmp_path: Path) -> Iterator[LocalDiskRun]:
    run = LocalDiskRun(tmp_path / "local-disk")
    run.root.mkdir()
    yield run
    run.stop()


@pytest.fixture
def deployment(
    tmp_path: Path, postgres_server: PostgresServer, s3_server: S3Server
) -> Iterator[tuple[Deployment, LocalBatchAPI, str, str]]:
    """The deployment's environment (own database, own bucket prefix, own Batch API)."""
    database = f"deploy_{uuid.uuid4().hex[:8]}"
    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg (3), which dagster-postgres does not
    # install; it installs psycopg2, so name that driver.
    postgres_url = postgres_server.create_database(database).replace(
        "postgresql://", "postgresql+psycopg2://", 1
    )
    prefix = f"distributed-{uuid.uuid4().hex[:8]}"
    api = LocalBatchAPI(tmp_path / "api-state", api_key=API_KEY).start()
    env = {
        # What the image provides: the project's Python on PATH, the tests package importable
        # (for the test run launcher).
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(PROJECT_ROOT),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "DAGSTER_POSTGRES_URL": postgres_url,
        "BATCH_ASSETS_STORAGE_DIR": s3_server.url(prefix),
        "BATCH_ASSETS_SENSOR_INTERVAL_SECONDS": "1",
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_BASE_URL": api.base_url,
        **s3_server.env,
        "AWS_DEFAULT_REGION": s3_server.env["AWS_REGION"],
    }
    deployment = Deployment(tmp_path / "deployment", env)
    try:
        yield deployment, api, database, prefix
    finally:
        deployment.stop()
        _kill_processes_in(deployment.root)
        api.stop()


def test_distributed_deployment_materializes_an_example_once_on_s3_and_postgres(
    deployment: tuple[Deployment, LocalBatchAPI, str, str],
    local_disk_run: LocalDiskRun,
    postgres_server: PostgresServer,
    s3_server: S3Server,
) -> None:
    deploy, api, database, prefix = deployment
    generated_before = _snapshot(GENERATED_DIR)
    started = time.monotonic()

    # --- the processes, as containers: code server first, then the daemon and the webserver.
    deploy.start_code_server()
    grpc = DagsterGrpcClient(port=deploy.code_port, host="127.0.0.1")

    def code_server_answers() -> bool:
        deploy.check_alive()
        try:
            grpc.ping("ready")
        except Exception:
            return False
        return True

    wait_for(code_server_answers, timeout=STARTUP_TIMEOUT, interval=0.2)
    first_daemon = deploy.start_daemon()
    deploy.start_webserver()

    def webserver_answers() -> bool:
        deploy.check_alive()
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{deploy.web_port}/server_info", timeout=2
            ):
                return True
        except OSError:
            return False

    wait_for(webserver_answers, timeout=STARTUP_TIMEOUT, interval=0.2)
    client = DagsterGraphQLClient("127.0.0.1", port_number=deploy.web_port)
    [location] = _graphql(client, LOCATIONS)["workspaceOrError"]["locationEntries"]
    assert location["locationOrLoadError"]["__typename"] == "RepositoryLocation", location
    ready = time.monotonic()

    # --- "Materialize all" on the example's group, with the batch slow enough to stay in flight.
    api.configure(seconds_per_request=SLOW_SECONDS_PER_REQUEST)
    nodes = _graphql(
        client,
        GROUP_ASSETS,
        {
            "group": {
                "groupName": GROUP,
                "repositoryName": REPOSITORY,
                "repositoryLocationName": LOCATION,
            }
        },
    )["assetNodes"]
    asset_keys = sorted(node["assetKey"]["path"] for node in nodes)
    assert sorted(key[-1] for key in asset_keys) == sorted([GROUP, *EXAMPLE_ASSETS])
    checks = [
        {"assetKey": node["assetKey"], "name": check["name"]}
        for node in nodes
        for check in (node["assetChecksOrError"] or {}).get("checks", [])
    ]
    launched = _graphql(
        client,
        LAUNCH,
        {
            "params": {
                "selector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": REPOSITORY,
                    "jobName": "__ASSET_JOB",
                    "assetSelection": [{"path": key} for key in asset_keys],
                    "assetCheckSelection": checks,
                },
                "mode": "default",
                "executionMetadata": {"tags": []},
            }
        },
    )["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    launch_run_id = launched["run"]["runId"]
    launch_time = time.monotonic()
    # The same example on local disk, for its results; alongside, as the deployment mostly waits.
    local_disk_run.start()

    def run_status(run_id: str) -> str:
        deploy.check_alive()
        status = client.get_run_status(run_id).value
        if status in {"FAILURE", "CANCELED"}:
            deploy.fail_with_logs(f"run {run_id} ended {status}")
        return status

    wait_for(lambda: run_status(launch_run_id) == "SUCCESS", timeout=PIPELINE_TIMEOUT, interval=0.5)
    submitted = time.monotonic()
    [batch] = api.client().batches.list().data
    assert batch.status in {"validating", "in_progress"}, batch.status
    # The first daemon's sensor watches the batch (it records progress as observations) ...
    wait_for(
        lambda: _asset_events(client, f"{PIPELINE}_batch")["observations"],
        timeout=PIPELINE_TIMEOUT,
        interval=0.5,
    )
    # ... and dies mid-flight, as a container killed by its host.
    os.killpg(first_daemon.process.pid, signal.SIGKILL)
    first_daemon.process.wait()
    first_daemon.killed = True
    killed_at = time.time()
    assert api.client().batches.retrieve(batch.id).status in {"validating", "in_progress"}

    deploy.start_daemon()

    def new_daemon_beats() -> bool:
        deploy.check_alive()
        statuses = _graphql(client, DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
        beats = {s["daemonType"]: s["lastHeartbeatTime"] or 0 for s in statuses}
        return all(beats.get(kind, 0) > killed_at for kind in ("SENSOR", "QUEUED_RUN_COORDINATOR"))

    wait_for(new_daemon_beats, timeout=STARTUP_TIMEOUT, interval=0.5)
    took_over = time.time()
    api.configure(seconds_per_request=0.0)

    def downloaded() -> bool:
        deploy.check_alive()
        for run in _runs(client):
            if run["status"] in {"FAILURE", "CANCELED"}:
                deploy.fail_with_logs(f"run {run['runId']} ended {run['status']}")
        return all(_asset_events(client, key)["materializations"] for key in DOWNLOAD_KEYS)

    wait_for(downloaded, timeout=PIPELINE_TIMEOUT, interval=0.5)
    finished = time.monotonic()
    wait_for(
        lambda: all(run["status"] == "SUCCESS" for run in _runs(client)),
        timeout=PIPELINE_TIMEOUT,
        interval=0.5,
    )

    # --- nothing submitted or downloaded twice, across the daemon's death.
    runs = _runs(client)
    run_ids = {run["runId"] for run in runs}
    events = {key: _asset_events(client, key)["materializations"] for key in DOWNLOAD_KEYS}
    [download_run_id] = {
        event["runId"] for materializations in events.values() for event in materializations
    }
    assert run_ids == {launch_run_id, download_run_id}, runs
    for key, materializations in events.items():
        assert len(materializations) == 1, (key, materializations)
    [submission] = _asset_events(client, f"{PIPELINE}_batch")["materializations"]
    [requests] = _asset_events(client, f"{PIPELINE}_requests")["materializations"]
    assert submission["runId"] == requests["runId"] == launch_run_id
    shard_urls = _metadata(requests)["shard_files"]
    assert len(shard_urls) == _metadata(requests)["shard_count"] >= 1
    openai = api.client()
    batches = openai.batches.list().data
    uploads = [file for file in openai.files.list().data if file.purpose == "batch"]
    assert len(batches) == len(uploads) == len(shard_urls), (batches, uploads)
    assert {batch.status for batch in batches} == {"completed"}
    assert sorted(batch.input_file_id for batch in batches) == sorted(f.id for f in uploads)
    assert sorted(_metadata(submission)["batch_ids"]) == sorted(batch.id for batch in batches)
    assert api.admin("GET", "stats")["calls"]["POST /v1/batches"] == len(shard_urls)

    # --- every file in the bucket, none on any process's disk, none in the repository.
    keys = s3_server.object_keys(prefix)
    root = f"{prefix}/{PIPELINE}"
    bucket_url = s3_server.url()
    for url in shard_urls:
        assert url.startswith(f"{bucket_url}/{root}/") and url.endswith(".jsonl"), url
        assert url.removeprefix(f"{bucket_url}/") in keys, (url, keys)
    downloads = [key for key in keys if key.startswith(f"{root}/downloads/")]
    assert len(downloads) >= len(batches), keys  # an output file per batch, maybe error files
    assert f"{root}/tables/{PIPELINE}_results.parquet" in keys
    assert f"{root}/tables/{PIPELINE}_errors.parquet" in keys
    run_folders = [Path(_tags(run)[FOLDER_TAG]) for run in runs]
    assert len(set(run_folders)) == len(runs) and all(f.is_dir() for f in run_folders)
    # The first daemon launched the submission run; the one that replaced it, the download run.
    first_tmp, second_tmp = (s.folder / "tmp" for s in deploy.services if s.name == "daemon")
    folder_of = {run["runId"]: Path(_tags(run)[FOLDER_TAG]) for run in runs}
    assert folder_of[launch_run_id].parent == first_tmp
    assert folder_of[download_run_id].parent == second_tmp
    local_files = _files_on_disk([service.folder for service in deploy.services] + run_folders)
    unexpected = [path for path in local_files if not _expected_on_disk(path, run_folders)]
    assert not unexpected, unexpected
    assert not [path for path in local_files if path.suffix in {".jsonl", ".parquet"}]
    assert _snapshot(GENERATED_DIR) == generated_before
    print(
        f"{len(keys)} objects in the bucket under {prefix}/:",
        *(key.removeprefix(f"{prefix}/") for key in keys),
        f"{len(local_files)} files on the processes' disks, all instance configuration, "
        "compute logs and run process logs",
        sep="\n  ",
    )

    # --- runs and their event logs in Postgres.
    in_postgres = postgres_server.connect(database)
    with in_postgres.cursor() as cursor:
        cursor.execute("SELECT run_id, status FROM runs")
        stored_runs = dict(cursor.fetchall())
        cursor.execute("SELECT run_id, count(*) FROM event_logs GROUP BY run_id")
        logged = dict(cursor.fetchall())
    in_postgres.close()
    assert stored_runs == {run_id: "SUCCESS" for run_id in run_ids}
    assert all(logged.get(run_id, 0) > 0 for run_id in run_ids), logged

    # --- the same results as the example materialized on local disk.
    results = pl.read_parquet(
        io.BytesIO(s3_server.read(f"{root}/tables/{PIPELINE}_results.parquet"))
    )
    reference = local_disk_run.results()
    differing = {
        column
        for column in reference.columns
        if column in results.columns
        and not results.sort("review_id")[column].equals(reference.sort("review_id")[column])
    }
    print("columns that differ from the local-disk run:", sorted(differing))
    assert results.columns == reference.columns
    assert differing <= PER_RUN_COLUMNS
    assert results.height == reference.height == 300
    assert (
        results.drop(PER_RUN_COLUMNS, strict=False)
        .sort("review_id")
        .equals(reference.drop(PER_RUN_COLUMNS, strict=False).sort("review_id"))
    )

    print(
        f"distributed deployment: {len(deploy.services)} processes "
        f"({', '.join(s.name for s in deploy.services)}) and {len(run_ids)} runs, each its own "
        f"process; startup {ready - started:.1f}s; launch to submitted "
        f"{submitted - launch_time:.1f}s; daemon killed to new daemon beating "
        f"{took_over - killed_at:.1f}s; launch to results {finished - launch_time:.1f}s "
        f"(batch held slow until the second daemon beat); the same example in one process on "
        f"local disk {local_disk_run.seconds:.1f}s; total {time.monotonic() - started:.1f}s"
    )


@dg.op
def sleep_until_stopped() -> None:
    """Sleep up to two minutes in short steps, so a SIGTERM lands at once."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.1)


@dg.job(executor_def=dg.in_process_executor)
def sleeping_job() -> None:
    sleep_until_stopped()


def test_process_run_launcher_runs_in_a_fresh_folder_with_only_the_env_given_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_tmp, home = tmp_path / "daemon-tmp", tmp_path / "home"
    runs_tmp.mkdir()
    home.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(runs_tmp))  # the launching process's TMPDIR
    # What the image would provide: `dagster` on PATH, the tests package importable.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(PROJECT_ROOT))
    monkeypatch.setenv("PASSED_ON", "yes")
    monkeypatch.setenv("NOT_PASSED_ON", "secret")
    launcher_config = {
        "module": "tests.deploy.process_run_launcher",
        "class": "ProcessRunLauncher",
        "config": {"env_vars": ["PASSED_ON", "SET_HERE=1"]},
    }
    with dg.instance_for_test(
        temp_dir=str(home), overrides={"run_launcher": launcher_config}
    ) as instance:
        origin = dg.reconstructable(sleeping_job).get_python_origin()
        run = instance.create_run_for_job(sleeping_job, job_code_origin=origin)
        instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type]
        run = instance.get_run_by_id(run.run_id)
        assert run is not None
        pid, folder = int(run.tags[PID_TAG]), Path(run.tags[FOLDER_TAG])
        try:
            environ = dict(
                line.split("=", 1)
                for line in Path(f"/proc/{pid}/environ").read_text().split("\0")
                if line
            )
            assert folder.parent == runs_tmp and folder.name.startswith(f"run-{run.run_id[:8]}")
            assert Path(os.readlink(f"/proc/{pid}/cwd")) == folder
            assert environ["TMPDIR"] == environ["HOME"] == str(folder)
            assert environ["DAGSTER_HOME"] == str(folder / "dagster_home")
            assert (environ["PASSED_ON"], environ["SET_HERE"]) == ("yes", "1")
            assert set(environ) == {
                "PATH",
                "PYTHONPATH",
                "PASSED_ON",
                "SET_HERE",
                "DAGSTER_RUN_JOB_NAME",
                "TMPDIR",
                "HOME",
                "DAGSTER_HOME",
            }

            def started() -> bool:
                current = instance.get_run_by_id(run.run_id)
                assert current is not None and current.status != dg.DagsterRunStatus.FAILURE
                return current.status == dg.DagsterRunStatus.STARTED

            wait_for(started, timeout=STARTUP_TIMEOUT, interval=0.1)
            # Any launcher finds the run's process by its tags, as a new daemon's would.
            assert ProcessRunLauncher().check_run_worker_health(run).status == WorkerStatus.RUNNING

            assert instance.run_launcher.terminate(run.run_id)

            def canceled() -> bool:
                current = instance.get_run_by_id(run.run_id)
                return current is not None and current.status == dg.DagsterRunStatus.CANCELED

            wait_for(canceled, timeout=STARTUP_TIMEOUT, interval=0.1)
            wait_for(lambda: process_start_time(pid) is None, timeout=30, interval=0.1)
            assert ProcessRunLauncher().check_run_worker_health(run).status == WorkerStatus.FAILED
            assert not instance.run_launcher.terminate(run.run_id)  # already finished
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
