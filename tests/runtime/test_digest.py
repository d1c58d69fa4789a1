"""The digest record: loss bits, the canonical parameter digest, and naming the first difference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime import digest


def test_loss_bits_are_the_float32_pattern():
    assert digest.loss_bits(1.0) == "3f800000"
    assert digest.loss_bits(np.float32(-2.5)) == "c0200000"
    # Two floats that print alike to 5 decimals still get different bits.
    a = np.float32(8.318766)
    b = np.nextafter(a, np.float32(9))
    assert f"{a:.5f}" == f"{b:.5f}" and digest.loss_bits(a) != digest.loss_bits(b)
    assert digest.loss_from_bits(digest.loss_bits(b)) == float(b)


def test_params_digest_is_canonical():
    params = {"b": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, "a": np.ones(3, np.float32)}
    reordered = {"a": np.ones(3, np.float32), "b": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    assert digest.params_sha256(params) == digest.params_sha256(reordered)
    # A Fortran-ordered copy has other memory but the same values: same digest.
    fortran = {"a": params["a"], "b": {"w": np.asfortranarray(params["b"]["w"])}}
    assert digest.params_sha256(fortran) == digest.params_sha256(params)


@pytest.mark.parametrize("change", ["value", "shape", "dtype", "path"])
def test_params_digest_sees_every_change(change):
    base = {"a": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    w = base["a"]["w"]
    other = {
        "value": {"a": {"w": np.where(w == 5, np.nextafter(np.float32(5), np.float32(6)), w)}},
        "shape": {"a": {"w": w.reshape(3, 2)}},
        "dtype": {"a": {"w": w.view(np.int32)}},
        "path": {"b": {"w": w}},
    }[change]
    assert digest.params_sha256(other) != digest.params_sha256(base)


def test_record_round_trip_and_first_difference(tmp_path):
    record = digest.DigestRecord("f" * 64, "r", 3, ["3f800000", "3f000000", "3e800000"], {2: "ab"}, "cd")
    assert record.complete
    digest.write_digest(tmp_path / "digest.json", record)
    again = digest.read_digest(tmp_path / "digest.json")
    assert again == record and digest.first_difference(record, again) is None
    changed = digest.DigestRecord("f" * 64, "r", 3, ["3f800000", "3f000001", "3e800000"], {2: "ab"}, "cd")
    assert digest.first_difference(record, changed).startswith("step 1:")
    assert record.truncated(1).losses == ["3f800000"] and not record.truncated(1).complete


def test_device_digest_is_the_same_for_every_layout_of_the_same_values():
    """The same parameter values under four meshes of 4 faked devices, and on the host: one digest."""
    import os
    import subprocess
    import sys

    from tests.runtime.runs import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_"))}
    env.update(XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-m", "tests.runtime.digest_check"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    digests = {k: v for k, v in found.items() if not k.endswith("-specs")}
    assert len(set(digests.values())) == 1, digests
    assert found["1x2x2-specs"] != found["4x1x1-specs"]  # really different layouts


def test_lane_digest_sees_every_change():
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    base = digest.params_digest({"a": {"w": w}})
    for other in ({"a": {"w": np.where(w == 5, np.nextafter(np.float32(5), np.float32(6)), w)}},
                  {"a": {"w": w.reshape(3, 2)}}, {"a": {"w": w.view(np.int32)}}, {"b": {"w": w}},
                  {"a": {"w": w[::-1].copy()}}):
        assert digest.params_digest(other) != base
    assert digest.params_digest({"a": {"w": np.asfortranarray(w)}}) == base
