"""compiler.aot_check: the dry run's view of `compile --aot` verdicts (records round-trip, trust, verdicts)."""

from __future__ import annotations

import json

from compiler import aot_check
from compiler.aot_check import AotIndex, check, compile_key, read_index, toolchain, write_record
from compiler.hardware import profile
from compiler.plan import plan
from compiler.specset import load_spec_set
from tests.conftest import MINIMAL_RUN

TPU = MINIMAL_RUN.replace("name: base", "name: small-tpu").replace(
    "model: {preset: tiny}", "model: {vocab_size: 1024, d_model: 128, n_layers: 1, n_heads: 2, d_ff: 256, remat: full}",
) + "    mesh: {accelerator: tpu-v5e, chips: 4, topology: 2x2, axes: {fsdp: 4}}\n"


def _spec(write_spec, text=TPU):
    (run,) = load_spec_set([write_spec(text)]).runs
    return run.spec


def _result(peak: int) -> dict:
    """The fields of runtime.aot.compile_run's result that a record keeps."""
    return {"key": "ab" * 32, "topology": "v5e:2x2", "peak_bytes_per_chip": peak, "hbm_bytes_per_chip": 16 * 10**9,
            "fits": peak <= 16 * 10**9, "memory": {"temp_bytes": 1}, "collectives": []}


def test_a_record_round_trips_and_its_verdict_is_the_peak_against_the_chip(tmp_path, write_spec):
    spec = _spec(write_spec)
    tools = toolchain()
    write_record(tmp_path, spec, _result(3 * 10**9), tools)
    index = AotIndex(read_index(tmp_path), tools)
    assert list(index.records) == [compile_key(spec)]
    fits = check(spec, profile("tpu-v5e"), index)
    assert (fits.status, fits.peak_bytes_per_chip, fits.hbm_bytes_per_chip) == ("fits", 3 * 10**9, 16 * 10**9)
    assert fits.label == "fits 19%" and "3 GB per chip of 16 GB on v5e:2x2" in fits.detail

    write_record(tmp_path, spec, _result(20 * 10**9), tools)  # the same step shape: the record is replaced
    index = AotIndex(read_index(tmp_path), tools)
    refused = check(spec, profile("tpu-v5e"), index)
    assert refused.status == "does not fit" and refused.label == "NO 125%" and refused.detail.startswith("does not fit")
    # the dry run shows it in the run's price row, and the plan is not refused for it (compile --aot refuses)
    (row,) = plan(load_spec_set([write_spec(TPU)]), aot=index).runs
    assert row.aot_check == refused


def test_a_record_from_another_toolchain_is_not_trusted_and_says_what_differs(tmp_path, write_spec):
    spec = _spec(write_spec)
    tools = toolchain()
    old = {**tools, "packages": {**tools["packages"], "jax": "0.4.30"}, "step_code": "0" * 64}
    write_record(tmp_path, spec, _result(10**9), old)
    result = check(spec, profile("tpu-v5e"), AotIndex(read_index(tmp_path), tools))
    assert result.status == "not checked" and result.peak_bytes_per_chip is None
    assert f"jax 0.4.30 (here {tools['packages']['jax']})" in result.detail
    assert "other runix step code" in result.detail and result.detail.endswith("run `runix compile --aot`")


def test_another_step_shape_is_not_checked_and_cpu_and_gpu_say_why(tmp_path, write_spec):
    spec = _spec(write_spec)
    tools = toolchain()
    write_record(tmp_path, spec, _result(10**9), tools)
    index = AotIndex(read_index(tmp_path), tools)
    wider = spec.model_copy(update={"batch": spec.batch.model_copy(update={"sequences": 32})})
    assert check(wider, profile("tpu-v5e"), index).detail == "not checked: run `runix compile --aot`"
    cpu = _spec(write_spec, MINIMAL_RUN)
    assert check(cpu, profile("cpu"), index).status == "unavailable"
    gpu = spec.model_copy(update={"mesh": spec.mesh.model_copy(update={"accelerator": "gpu-h100", "topology": None})})
    result = check(gpu, profile("gpu-h100"), index)
    assert result.status == "unavailable" and "needs the GPU" in result.detail


def test_the_index_skips_what_is_not_a_record_and_the_step_code_digest_is_stable(tmp_path):
    folder = aot_check.index_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / "junk.json").write_text("{not json")
    (folder / "other.json").write_text(json.dumps({"format": "something else", "compile_key": "x"}))
    assert read_index(tmp_path) == {} and read_index(tmp_path / "absent") == {} and read_index(None) == {}
    assert aot_check.step_code_digest() == aot_check.step_code_digest() and len(aot_check.step_code_digest()) == 64
