"""A real SLURM cluster (slurm/ci/cluster.sh) runs submitit array jobs and reports failures."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

submitit = pytest.importorskip("submitit")

pytestmark = pytest.mark.slurm


def _square(x: int) -> int:
    return x * x


def _die(code: int) -> None:
    os._exit(code)  # no result pickle: only accounting (sacct) can tell submitit it failed


def _executor(folder, slurm_cluster):
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    # the functions below are pickled by reference to this module: make it importable in the job
    tests_dir = Path(__file__).resolve().parent
    executor.update_parameters(timeout_min=2, mem_gb=0.2, cpus_per_task=1, slurm_array_parallelism=2,
                               slurm_setup=[f'export PYTHONPATH="{tests_dir}${{PYTHONPATH:+:$PYTHONPATH}}"'])
    return executor


def test_map_array_returns_every_result(tmp_path, slurm_cluster):
    executor = _executor(tmp_path, slurm_cluster)
    jobs = executor.map_array(_square, [1, 2, 3, 4])
    assert len(jobs) == 4
    assert [job.result() for job in jobs] == [1, 4, 9, 16]
    assert all(job.job_id.split("_")[0] == jobs[0].job_id.split("_")[0] for job in jobs)  # one array


def test_task_that_dies_is_reported_failed(tmp_path, slurm_cluster):
    executor = _executor(tmp_path, slurm_cluster)
    job = executor.submit(_die, 3)
    deadline = time.monotonic() + 45
    while not job.done(force_check=True):
        assert time.monotonic() < deadline, f"job {job.job_id} not done after 45 s (state {job.state})"
        time.sleep(0.5)
    assert job.state == "FAILED"
    with pytest.raises(submitit.core.utils.UncompletedJobError, match="FAILED"):
        job.result()
