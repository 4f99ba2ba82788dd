"""`ProcessRunLauncher`: DockerRunLauncher's approach with a local process for the container.

For the distributed test, which cannot run Docker. Each run is `dagster api execute_run` built
with `ExecuteRunArgs(...).get_command_args()`, as DockerRunLauncher builds the container's command,
started in its own session with a fresh `tempfile.mkdtemp()` as working directory, TMPDIR, HOME and
DAGSTER_HOME, and with only the environment the config passes on:

    run_launcher:
      module: tests.deploy.process_run_launcher
      class: ProcessRunLauncher
      config:
        env_vars: [DAGSTER_POSTGRES_URL, OPENAI_API_KEY, "KEY=value"]  # as DockerRunLauncher's
        image_env_vars: [PATH, PYTHONPATH]  # what a container image would set itself

A container sees the same paths as the daemon but its own disk, so the instance ref's local storage
(artifacts, which Dagster's default IO manager pickles into, and compute logs) is moved from under
the launching process's DAGSTER_HOME to the run's own folder: what a run keeps on "local" disk
stays in that run's folder, and no other run can read it.

The process id, its start time and the folder are run tags, so `terminate` (SIGTERM, as
`docker stop`) and `check_run_worker_health` (for run monitoring) work from any daemon process,
not only the one that launched the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import dagster._check as check
from dagster import Array, Field, StringSource
from dagster._core.instance.ref import InstanceRef
from dagster._core.launcher.base import (
    CheckRunHealthResult,
    LaunchRunContext,
    ResumeRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.utils import parse_env_var
from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs
from dagster._serdes import ConfigurableClass
from dagster._serdes.config_class import ConfigurableClassData

PID_TAG = "process/pid"
START_TIME_TAG = "process/start_time"
FOLDER_TAG = "process/folder"
DEFAULT_IMAGE_ENV_VARS = ("PATH", "PYTHONPATH")


def process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat).

    None when there is no such process, or it has exited and waits to be reaped (a zombie):
    with the pid, it names one process even after the pid is reused.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    state, start_time = fields[0], fields[19]
    return None if state in {"Z", "X"} else start_time


class ProcessRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run as a local `dagster api execute_run` process in its own empty folder."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        env_vars: Sequence[str] | None = None,
        image_env_vars: Sequence[str] | None = None,
    ) -> None:
        self._inst_data = inst_data
        self.env_vars = list(check.opt_sequence_param(env_vars, "env_vars", of_type=str))
        self.image_env_vars = list(
            DEFAULT_IMAGE_ENV_VARS if image_env_vars is None else image_env_vars
        )
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            "env_vars": Field(
                Array(StringSource),
                is_required=False,
                description="Environment variables for the run: KEY (from the launching "
                "process) or KEY=VALUE, as DockerRunLauncher's env_vars.",
            ),
            "image_env_vars": Field(
                Array(StringSource),
                is_required=False,
                description="Variables a container image would set itself, taken from the "
                "launching process when set there (default PATH and PYTHONPATH).",
            ),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> Self:
        return cls(inst_data=inst_data, **config_value)

    def _environment(self, run: DagsterRun, folder: Path) -> dict[str, str]:
        env = {name: os.environ[name] for name in self.image_env_vars if name in os.environ}
        env.update(parse_env_var(env_var) for env_var in self.env_vars)
        env.update(
            {
                "DAGSTER_RUN_JOB_NAME": run.job_name,
                "TMPDIR": str(folder),
                "HOME": str(folder),
                "DAGSTER_HOME": str(folder / "dagster_home"),
            }
        )
        return env

    def _instance_ref_for(self, folder: Path) -> InstanceRef:
        """This instance's ref, with its local storage (artifacts, compute logs) in the run's
        folder wherever it was under our DAGSTER_HOME: a container has its own disk there."""
        ref = self._instance.get_ref()
        home = os.environ.get("DAGSTER_HOME")
        if not home:
            return ref

        def relocated(data: ConfigurableClassData) -> ConfigurableClassData:
            config = data.config_yaml.replace(home, str(folder / "dagster_home"))
            return data._replace(config_yaml=config)

        return ref._replace(
            local_artifact_storage_data=relocated(ref.local_artifact_storage_data),
            compute_logs_data=relocated(ref.compute_logs_data),
        )

    def _launch(self, run: DagsterRun, args_class: type[ExecuteRunArgs | ResumeRunArgs]) -> None:
        self._reap()
        job_code_origin = check.not_none(run.job_code_origin)
        folder = Path(tempfile.mkdtemp(prefix=f"run-{run.run_id[:8]}-"))
        (folder / "dagster_home").mkdir()
        command = args_class(
            job_origin=job_code_origin,
            run_id=run.run_id,
            instance_ref=self._instance_ref_for(folder),
        ).get_command_args()
        with (folder.parent / f"{folder.name}.log").open("ab") as log:
            process = subprocess.Popen(
                list(command),
                cwd=folder,
                env=self._environment(run, folder),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the daemon, as a container does
            )
        self._children[run.run_id] = process
        self._instance.report_engine_event(
            message=f"Launching run in a new process {process.pid} in {folder}",
            dagster_run=run,
            cls=self.__class__,
        )
        self._instance.add_run_tags(
            run.run_id,
            {
                PID_TAG: str(process.pid),
                START_TIME_TAG: process_start_time(process.pid) or "",
                FOLDER_TAG: str(folder),
            },
        )

    def launch_run(self, context: LaunchRunContext) -> None:
        self._launch(context.dagster_run, ExecuteRunArgs)

    @property
    def supports_resume_run(self) -> bool:
        return True

    def resume_run(self, context: ResumeRunContext) -> None:
        self._launch(context.dagster_run, ResumeRunArgs)

    def _reap(self) -> None:
        """Collect the exit status of runs this launcher started that have ended."""
        for run_id, process in list(self._children.items()):
            if process.poll() is not None:
                del self._children[run_id]

    def _alive(self, run: DagsterRun) -> int | None:
        """The run's process id while its process runs, else None."""
        pid = run.tags.get(PID_TAG)
        if not pid:
            return None
        child = self._children.get(run.run_id)
        if child is not None and child.poll() is not None:
            return None
        start_time = process_start_time(int(pid))
        if start_time is None or start_time != run.tags.get(START_TIME_TAG):
            return None
        return int(pid)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        pid = self._alive(run)
        if pid is None:
            self._instance.report_engine_event(
                message="Unable to find the run's process to send termination request to.",
                dagster_run=run,
                cls=self.__class__,
            )
            return False
        os.kill(pid, signal.SIGTERM)
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        pid = run.tags.get(PID_TAG)
        if not pid:
            return CheckRunHealthResult(WorkerStatus.NOT_FOUND, msg="No process id tag for run.")
        if self._alive(run) is not None:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        child = self._children.get(run.run_id)
        if child is not None and child.returncode == 0:
            return CheckRunHealthResult(WorkerStatus.SUCCESS)
        exit_code = "" if child is None else f" with exit code {child.returncode}"
        return CheckRunHealthResult(
            WorkerStatus.FAILED, msg=f"Run process {pid} is no longer running{exit_code}."
        )

    def dispose(self) -> None:
        self._reap()
