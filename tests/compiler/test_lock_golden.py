"""Golden hash of specs/tiny's tiny-code under a fixed, fake lock.

It pins the whole path from spec file to run hash with locked inputs: the
spec language and its resolution, the canonical form (compiler.canonical),
and what of a lock enters the hash (compiler.lock.Lock.inputs_for: each
source's and the tokenizer's digest, runtime versions, numerics facts for the
run's accelerator). It may change only when one of those changes on purpose,
or when specs/tiny/chain.yaml changes tiny-code (or tiny-base) — say so in
the commit; every stored run is re-keyed by such a change.
"""

from __future__ import annotations

import hashlib

from compiler.lock import Lock, build_lock
from compiler.resolve_inputs import Resolution
from compiler.specset import compile_documents, read_documents
from tests.conftest import REPO

TINY = REPO / "specs" / "tiny"
# Changed when locked inputs began to enter by content digest alone (their URIs left the hash document).
GOLDEN_TINY_CODE = "f6c7077aa47e56cbe40d9c4b2adf3ab84cd29b33eff33ed436df7982cb1f3490"

FIXED_ENV = {
    "runtime": {"python": "3.11.7", "jax": "0.10.2", "jaxlib": "0.10.2", "flax": "0.12.8", "optax": "0.2.8",
                "grain": "0.2.18", "orbax-checkpoint": "0.12.8", "numpy": "2.4.6"},
    # Shaped like runtime.numerics.numerics_facts(mesh): `bits` are hashed, `host` is not.
    "numerics": {"bits": {"machine": "x86_64", "cpu_effective_isa": "AVX2", "cpu_thread_pool": 4,
                          "xla_cpu_flags": ["--xla_cpu_max_isa=AVX2", "--xla_cpu_enable_fast_math=false"]},
                 "host": {"cpu_model": "any CPU", "platform": "any kernel"}},
}


def _digest(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


class FixedResolver:
    def source(self, uri):
        return Resolution(locked={"type": "fixed", "digest": _digest("source " + uri)})

    def tokenizer(self, uri, vocab_size):
        return Resolution(locked={"type": "fixed", "digest": _digest(f"tokenizer {uri} {vocab_size}")})

    def token_count(self, *args):
        return None


def fixed_lock(unlocked) -> Lock:
    return build_lock(unlocked, ("specs/tiny",), FixedResolver(), FIXED_ENV)


def test_golden_hash_of_tiny_code_under_a_fixed_lock():
    documents = read_documents([TINY])
    lock = fixed_lock(compile_documents(documents))
    run = compile_documents(documents, lock.inputs_for).by_name()["tiny-code"]
    assert run.hash == GOLDEN_TINY_CODE


def test_the_fixed_lock_is_what_the_hash_sees():
    documents = read_documents([TINY])
    lock = fixed_lock(compile_documents(documents))
    spec = compile_documents(documents).by_name()["tiny-code"].spec
    assert lock.inputs_for(spec) == {
        "sources": {"code": {"digest": _digest("source builtin://code")},
                    "markup": {"digest": _digest("source builtin://markup")}},
        "tokenizer": {"digest": _digest("tokenizer builtin://bpe 4096")},
        "runtime": FIXED_ENV["runtime"],
        "numerics": FIXED_ENV["numerics"]["bits"],
    }
