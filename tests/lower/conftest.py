"""Helpers for the lowering tests: spec sets with cluster meshes, and an experiment that records.

`RecordingExperiment` is xmanager's own mock experiment (xm_mock) with one
change: each added job group is also handed to the launch method registered
for its executor type, as xm_local's experiment does, so the GKE executor
really renders its manifests. It records the identity of every unit added.
"""

from __future__ import annotations

import asyncio

import pytest
from xmanager import xm_mock
from xmanager.xm import core, job_operators
from xmanager.xm_local import registry

from compiler.specset import load_spec_set
from tests.conftest import MINIMAL_RUN

# tests.conftest's minimal run as an abstract base, with a global batch that 256 fsdp chips divide.
BASE_RUN = (MINIMAL_RUN.removeprefix("runs:\n")
            .replace("  - name: base\n", "  - name: base\n    abstract: true\n")
            .replace("sequences: 8,", "sequences: 256,"))

CLUSTER_RUNS = BASE_RUN + """\
  - name: v5e-pod
    extends: base
    mesh: {accelerator: tpu-v5e, chips: 256, axes: {fsdp: 256}}
  - name: v5e-host
    extends: base
    mesh: {accelerator: tpu-v5e, chips: 8, topology: 2x4, axes: {fsdp: 8}}
  - name: v4-child
    extends: base
    init: {kind: parent, run: v5e-host}
    mesh: {accelerator: tpu-v4, chips: 16, topology: 2x2x4, axes: {data: 2, fsdp: 8}}
  - name: h100
    extends: base
    mesh: {accelerator: gpu-h100, chips: 16, axes: {fsdp: 16}}
"""


@pytest.fixture
def compile_runs(tmp_path):
    """Compile `runs:` list items (indented like CLUSTER_RUNS; `base` is there to extend) into {name: run}."""

    def compile_(entries: str) -> dict:
        path = tmp_path / "specs.yaml"
        path.write_text("runs:\n" + BASE_RUN + entries)
        return load_spec_set([path]).by_name()

    return compile_


class _LaunchingUnit(xm_mock.MockExperimentUnit):
    async def _launch_job_group(self, job_group, args, identity):
        await super()._launch_job_group(job_group, args, identity)
        for executor_type in {type(job.executor) for job in job_operators.flatten_jobs(job_group)}:
            await registry.get_launch_method(executor_type)(self, job_group)


class RecordingExperiment(xm_mock.MockExperiment):
    def __init__(self) -> None:
        super().__init__()
        self.identities: list[str] = []

    def _create_experiment_unit(self, args, role=core.WorkUnitRole(), identity=""):
        self.identities.append(identity)
        unit = _LaunchingUnit(self, self._work_unit_id_predictor, self._create_task, self.launched_jobs,
                              self.launched_jobs_args, args, role, identity)
        self._work_units[unit.work_unit_id] = unit
        future = asyncio.Future(loop=self._event_loop)
        future.set_result(unit)
        return future
