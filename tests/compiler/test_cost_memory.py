"""Peak memory per chip against values computed by hand, and how each knob moves it."""

from __future__ import annotations

import pytest

from compiler.hardware import GB, GiB, PROFILES
from compiler.memory import memory_per_chip
from compiler.specset import load_spec_set
from kernels import footprint
from tests.conftest import REPO


@pytest.fixture(scope="module")
def tiny_code():
    return load_spec_set([REPO / "specs" / "tiny"]).by_name()["tiny-code"].spec


def with_(spec, **sections):
    """spec with sub-fields replaced: with_(spec, model={"remat": "full"})."""
    return spec.model_copy(update={key: getattr(spec, key).model_copy(update=value) for key, value in sections.items()})


# The compiler's own terms (weights, optimizer state, activations outside the attention kernel, the
# fsdp gather) are checked against numbers worked out by hand. The kernels' transient buffers come from
# kernels.footprint, whose formulas tests/kernels checks against XLA's buffer assignment; here we check
# that the compiler asks it about the right shapes (tokens and sequences per chip, dtype, chunk).


def test_tiny_code_memory_by_hand(tiny_code):
    # float32 params and compute, 1 cpu chip, remat none, xla attention, chunked loss (chunk 4096).
    m = memory_per_chip(tiny_code, capacity=GiB)
    params = 393_408
    assert m.params == m.grads == params * 4 == 1_573_632
    assert m.optimizer == 2 * params * 4
    sequences, seq, tokens = 8, 128, 8 * 128
    # per token of one block outside attention: norms 2·64 + qkv 12·16 + rotated q,k 8·16
    # + attention output 64 + SwiGLU 4·256 = 1536 elements × 4 bytes; 2 blocks + final norm in/out
    outside = (2 * (128 + 192 + 128 + 64 + 1024) * 4 + 2 * 64 * 4) * tokens
    assert outside == 13_107_200
    kept = footprint.attention_activation_bytes(sequences, seq, 4, 4, 16, "xla", dtype_bytes=4)
    peak = footprint.attention_peak_bytes(sequences, seq, 4, 4, 16, "xla", dtype_bytes=4)
    assert kept >= sequences * 4 * seq * seq * 4  # at least the f32 [S, S] scores of every head
    # every block keeps its attention residuals; the one being differentiated holds its peak instead,
    # and the tied table's gradient from the loss (4096 × 64 float32) waits for the lookup's
    assert m.activations == outside + 2 * kept
    assert m.backward == peak - kept + 4096 * 64 * 4
    # one float32 chip: the loss reads the parameter itself (no gathered or cast copy); XLA:CPU's form
    assert m.loss == footprint.cross_entropy_peak_bytes(tokens, 4096, 64, 4096, "chunked", dtype_bytes=4)
    assert m.loss >= 2 * 1024 * 4096 * 4  # at least two [chunk = 1024 tokens, vocab] f32 blocks
    assert m.gather == 0
    assert m.total == 4 * 1_573_632 + m.activations + max(m.loss, m.backward)
    assert m.fits and m.fraction == pytest.approx(m.total / GiB)


def test_sharded_470m_on_v5e_by_hand(tiny_code):
    spec = with_(tiny_code, model={"preset": "to-code-470m", "vocab_size": 256_000, "d_model": 1024, "n_layers": 16,
                                   "n_heads": 16, "n_kv_heads": 16, "head_dim": 64, "d_ff": 2816,
                                   "rotary_dim": 64, "remat": "full"},
                 batch={"sequences": 512, "sequence_length": 8192},
                 mesh={"accelerator": "tpu-v5e", "chips": 256, "axes": tiny_code.mesh.axes.model_copy(update={"fsdp": 256})},
                 dtypes={"compute": "bfloat16"}, kernels={"attention": "pallas_tpu", "cross_entropy_chunk": 1024})
    m = memory_per_chip(spec, capacity=PROFILES["tpu-v5e"].memory_bytes)
    total_params = 467_682_304
    assert m.params == m.grads == total_params // 256 * 4 == 7_307_536  # divides evenly
    assert m.optimizer == 2 * 7_307_536
    sequences, seq = 512 // 256, 8192
    tokens = sequences * seq
    # remat full: 16 block inputs (1024 bf16 each) and the final norm's input and output
    assert m.activations == (16 * 1024 * 2 + 2 * 1024 * 2) * tokens == 603_979_776
    # the block being recomputed holds its whole set in place of its input: norm 2·1024 + qkv 48·64
    # + rotated 32·64 + out 1024 + SwiGLU 4·2816 in bf16; its attention call's buffers (remat full keeps
    # none); and the tied table's bf16 gradient from the loss
    recomputed = ((2048 + 3072 + 2048 + 1024 + 11264) * 2 - 1024 * 2) * tokens
    attention_peak = footprint.attention_peak_bytes(sequences, seq, 16, 16, 64, "pallas_tpu", dtype_bytes=2)
    assert m.backward == recomputed + attention_peak + 256_000 * 1024 * 2
    # the loss: the table gathered over fsdp in bf16, and the kernel as XLA compiles it for TPU
    assert m.loss == 256_000 * 1024 * 2 + footprint.cross_entropy_peak_bytes(
        tokens, 256_000, 1024, 1024, "chunked", dtype_bytes=2, fused=True)
    assert m.gather == 2 * (205_538_304 // 16) * 2 == 51_384_576  # one block's weights and gradient, bf16
    assert m.loss > m.backward
    assert m.total == 4 * 7_307_536 + 51_384_576 + m.activations + m.loss
    assert m.capacity == 16 * GB and m.fits


def test_remat_policies_order_memory(tiny_code):
    peaks = {p: memory_per_chip(with_(tiny_code, model={"remat": p}), GiB).activations for p in ("none", "dots", "full")}
    assert peaks["full"] < peaks["dots"] < peaks["none"]


def test_reference_loss_holds_the_whole_logits(tiny_code):
    m = memory_per_chip(with_(tiny_code, kernels={"cross_entropy": "reference"}), GiB)
    assert m.loss >= 2 * (8 * 128) * 4096 * 4  # at least the [tokens, vocab] f32 logits and their gradient
    assert m.loss > memory_per_chip(tiny_code, GiB).loss


def test_weights_split_over_fsdp_and_tensor_not_data(tiny_code):
    base = memory_per_chip(tiny_code, GiB)

    def on(data, fsdp, tensor):
        axes = tiny_code.mesh.axes.model_copy(update={"data": data, "fsdp": fsdp, "tensor": tensor})
        return memory_per_chip(with_(tiny_code, mesh={"chips": data * fsdp * tensor, "axes": axes}), GiB)

    assert on(4, 1, 1).params == base.params
    assert on(1, 4, 1).params == base.params // 4
    assert on(1, 2, 2).params == base.params // 4
    # the batch splits over data × fsdp, features over tensor
    assert on(4, 1, 1).activations == base.activations // 4
    assert on(1, 1, 4).activations == base.activations // 4
    assert on(2, 2, 1).loss < base.loss


def test_cpu_devices_share_the_host_memory():
    cpu = PROFILES["cpu"]
    assert cpu.memory_per_chip(1) == cpu.memory_bytes
    assert cpu.memory_per_chip(4) == cpu.memory_bytes // 4
    assert PROFILES["tpu-v5e"].memory_per_chip(256) == 16 * GB


def test_every_accelerator_of_the_spec_has_a_profile_with_a_source():
    from compiler.spec import Accelerator

    assert set(PROFILES) == {a.value for a in Accelerator}
    for hw in PROFILES.values():
        assert hw.peak_flops > 0 and hw.memory_bytes > 0 and 0 < hw.default_mfu <= 1 and hw.source
