"""runtime.numerics: pinned environment and facts, computed without importing jax."""

from __future__ import annotations

import json
import subprocess
import sys

from compiler.spec import MeshSpec
from runtime import numerics

from tests.runtime.runs import REPO


def test_numerics_never_imports_jax():
    code = ("import sys, json; from runtime import numerics; from compiler.spec import MeshSpec; "
            "facts = numerics.numerics_facts(MeshSpec(chips=4, axes={'data': 4}), 2); "
            "print(json.dumps({'jax': 'jax' in sys.modules, 'facts': facts}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(out.stdout)
    assert result["jax"] is False
    assert result["facts"]["bits"]["cpu_thread_pool"] == 4


def test_pinned_environment_on_cpu():
    mesh = MeshSpec(chips=4, axes={"data": 2, "fsdp": 2})
    one, two = numerics.pinned_environment(mesh, 1), numerics.pinned_environment(mesh, 2)
    assert "--xla_force_host_platform_device_count=4" in one["XLA_FLAGS"]
    assert "--xla_force_host_platform_device_count=2" in two["XLA_FLAGS"]
    assert "--xla_cpu_max_isa=AVX2" in one["XLA_FLAGS"] and "--xla_cpu_enable_fast_math=false" in one["XLA_FLAGS"]
    # Same thread pool whatever the split over processes (it is a function of the spec).
    assert one["PJRT_NPROC"] == two["PJRT_NPROC"] == str(max(numerics.MIN_CPU_THREADS, 4))
    assert one["JAX_THREEFRY_PARTITIONABLE"] == "1" and one["JAX_DEFAULT_PRNG_IMPL"] == "threefry2x32"


def test_bits_do_not_depend_on_the_process_split():
    mesh = MeshSpec(chips=4, axes={"data": 4})
    assert numerics.numerics_facts(mesh, 1)["bits"] == numerics.numerics_facts(mesh, 2)["bits"]


def test_accelerators_get_no_cpu_flags():
    env = numerics.pinned_environment(MeshSpec(accelerator="tpu-v5e", chips=8, axes={"fsdp": 8}))
    assert env["XLA_FLAGS"] == "" and "PJRT_NPROC" not in env


def test_cpu_features_and_effective_isa(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f\n\n"
                       "processor\t: 1\nmodel name\t: Test CPU\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f\n")
    features = numerics.cpu_features(str(cpuinfo))
    assert features == {"model": "Test CPU", "isa": ["avx", "avx2", "avx512f", "fma", "sse4_2"]}
    assert numerics.effective_isa(features["isa"]) == "AVX2"  # capped at the ceiling
    assert numerics.effective_isa(["sse4_2", "avx"]) == "AVX"  # an older host: recorded, so it hashes apart
    assert numerics.cpu_features(str(tmp_path / "missing")) == {"model": "", "isa": []}


def test_environment_drift_names_what_is_not_pinned():
    mesh = MeshSpec()
    pinned = numerics.pinned_environment(mesh)
    assert numerics.environment_drift(mesh, environ=pinned) == {}
    drift = numerics.environment_drift(mesh, environ={**pinned, "PJRT_NPROC": "64"})
    assert drift == {"PJRT_NPROC": ("64", pinned["PJRT_NPROC"])}


def test_entry_point_imports_no_jax_before_pinning():
    """python -m runtime must read spec.json and pin the environment before anything imports jax."""
    code = "import sys, runtime.__main__, runtime.data_source, runtime.digest; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_host_facts_are_per_accelerator_kind_and_bits_a_pure_function_of_them_and_the_mesh(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test CPU\nflags\t\t: sse4_2 avx avx2 fma\n")
    cpu = numerics.host_facts("cpu", str(cpuinfo))
    tpu = numerics.host_facts("tpu-v5e", str(cpuinfo))
    assert cpu["facts"]["cpu_isa"] == ["avx", "avx2", "fma", "sse4_2"] and "cpu_isa" not in tpu["facts"]
    assert cpu["host"] == {"cpu_model": "Test CPU", "platform": cpu["host"]["platform"]}
    small, big = MeshSpec(chips=1), MeshSpec(chips=16, axes={"data": 16})
    # numerics_facts (what the trainer records) is exactly host facts + the mesh's pinned bits.
    assert numerics.numerics_facts(big, 1, str(cpuinfo))["bits"] == numerics.numerics_bits(cpu["facts"], big)

    def no_reading(*args, **kwargs):
        raise AssertionError("numerics_bits must read nothing")

    monkeypatch.setattr("builtins.open", no_reading)
    monkeypatch.setattr(numerics.os, "environ", {})
    bits_small, bits_big = numerics.numerics_bits(cpu["facts"], small), numerics.numerics_bits(cpu["facts"], big)
    assert bits_small["cpu_thread_pool"] == 4 and bits_big["cpu_thread_pool"] == 16  # derived from the mesh
    assert bits_small["cpu_effective_isa"] == bits_big["cpu_effective_isa"] == "AVX2"
    on_tpu = numerics.numerics_bits(tpu["facts"], MeshSpec(accelerator="tpu-v5e", chips=8, axes={"fsdp": 8}))
    assert "cpu_isa" not in on_tpu and "xla_cpu_flags" not in on_tpu and on_tpu["gradient_reduction"] == "xla"


def test_tpu_facts_name_libtpu_and_its_pinned_flags():
    mesh = MeshSpec(accelerator="tpu-v5e", chips=8, axes={"fsdp": 8})
    bits = numerics.numerics_facts(mesh)["bits"]
    assert set(bits["accelerator_packages"]) == {"libtpu"}
    assert bits["accelerator_packages"]["libtpu"]  # installed from requirements.lock (jax[tpu])
    assert bits["libtpu_init_args"] == numerics.TPU_INIT_ARGS
    assert numerics.pinned_environment(mesh)["LIBTPU_INIT_ARGS"] == numerics.TPU_INIT_ARGS
    assert "cpu_isa" not in bits and "xla_gpu_flags" not in bits


def test_gpu_facts_name_the_cuda_plugin_and_the_determinism_flags():
    mesh = MeshSpec(accelerator="gpu-h100", chips=8, axes={"fsdp": 8})
    bits = numerics.numerics_facts(mesh)["bits"]
    assert set(bits["accelerator_packages"]) == {"jax-cuda12-plugin", "jax-cuda12-pjrt"}
    assert "--xla_gpu_deterministic_ops=true" in bits["xla_gpu_flags"]
    env = numerics.pinned_environment(mesh)
    assert env["XLA_FLAGS"].split() == list(numerics.GPU_DETERMINISM_FLAGS) and "LIBTPU_INIT_ARGS" not in env
