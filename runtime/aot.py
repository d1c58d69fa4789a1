"""Compile a run's real train step ahead of time for its TPU slice, on this CPU machine, and read what XLA says.

Why: a 256-chip run should be refused on a laptop when XLA (not only the
analytic estimate of compiler.memory) says it does not fit, and a step whose
collectives move far more than FSDP needs should be seen before it queues.
libtpu (from `jax[tpu]` at the pinned jax, requirements.lock) compiles for a
topology described by `jax.experimental.topologies.get_topology_desc` without
any TPU attached; the compiled executable's `memory_analysis()` is XLA's own
per-chip buffer assignment and its HLO text names every collective (BRIEF §8).
`cost_analysis()` is not used: its time and FLOPs are wrong for steps with
loops and Pallas kernels.

What is compiled is exactly what the trainer runs: the model, optimizer,
state layout and `runtime.train_step.lower_train_step` with the reduction the
run's mesh gets (runtime.numerics.gradient_reduction). Results are keyed by
the sha256 of the lowered program (StableHLO text) together with the target
topology and the compiler's version and flags, so a cache entry is reused
exactly when the same program would be compiled for the same chips.

GPU meshes: jax 0.10 has no compile-only GPU target on a machine without a
GPU (there is no `get_topology_desc` for CUDA, and the CUDA plugin needs a
device to build a client), so `compile_run` refuses them with that reason.

Only the `runix compile --aot` path imports this module (it imports jax).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.metadata
import json
import os
import pathlib
import re

from compiler.spec import RunSpec, ScratchInit

# runix accelerator kind -> libtpu's generation name in topology strings ("v5e:16x16").
TPU_GENERATIONS = {"tpu-v4": "v4", "tpu-v5e": "v5e", "tpu-v5p": "v5p", "tpu-v6e": "v6e"}
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
FORMAT = "runix-aot/2"  # 2: the pieces of one multi-step all-gather count once


class AotUnavailable(Exception):
    """This run's accelerator has no compile-only target here (the message says why)."""


@dataclasses.dataclass(frozen=True)
class Collective:
    kind: str
    count: int  # per step, counting the trip counts of the loops it sits in
    bytes_per_chip: int  # summed over those executions: the larger of each one's operand and result buffers

    def to_json(self) -> dict:
        return {"kind": self.kind, "count": self.count, "bytes_per_chip": self.bytes_per_chip}


def topology_name(spec: RunSpec, topology: str | None = None) -> str:
    """libtpu's name of the run's slice, e.g. "v5e:16x16"; `topology` defaults to the spec's mesh.topology."""
    accelerator = getattr(spec.mesh.accelerator, "value", spec.mesh.accelerator)
    if accelerator not in TPU_GENERATIONS:
        raise AotUnavailable(
            f"{accelerator}: no compile-only target here (jax {jax_version()} offers ahead-of-time "
            "topologies for TPU only; compiling for a GPU needs the GPU)")
    topology = topology or spec.mesh.topology or _default_topology(accelerator, spec.mesh.chips)
    return f"{TPU_GENERATIONS[accelerator]}:{topology}"


def _default_topology(accelerator: str, chips: int) -> str:
    """The one GKE shape with that many chips (compiler.lower.slices), as the launcher would choose."""
    from compiler.lower.slices import TPU_FAMILIES  # noqa: PLC0415

    shapes = TPU_FAMILIES[accelerator].shapes(chips)
    if len(shapes) != 1:
        raise AotUnavailable(f"{accelerator} with {chips} chips: state mesh.topology ({', '.join(shapes) or 'none'})")
    return shapes[0]


def jax_version() -> str:
    return importlib.metadata.version("jax")


def compiler_facts() -> dict:
    """What besides the program decides the compiled result: jax, libtpu and libtpu's flags."""
    try:
        libtpu = importlib.metadata.version("libtpu")
    except importlib.metadata.PackageNotFoundError:
        libtpu = None
    return {"jax": jax_version(), "libtpu": libtpu, "LIBTPU_INIT_ARGS": os.environ.get("LIBTPU_INIT_ARGS", "")}


def devices(topology: str):
    """libtpu's abstract devices of a topology ("v5e:16x16"): no TPU needed.

    Compiling touches no TPU, so two processes compiling at once (or one
    beside a test suite that loaded libtpu) must not trip libtpu's
    one-process-per-TPU lockfile: ALLOW_MULTIPLE_LIBTPU_LOAD says so. And
    with no platform named, jax would try to open a local TPU first and
    print warnings about its missing environment: JAX_PLATFORMS=cpu keeps
    the host's own backend to the CPU. Both only take effect before jax
    starts its backends, and only where the caller has not set them.
    """
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from jax.experimental import topologies  # noqa: PLC0415

    # chips_per_host_bounds (2, 2, 1): multi-host v4/v5e/v5p/v6e slices are built from 4-chip hosts;
    # the single-host 2x4 v5e/v6e shape has 8 chips on one host.
    shape = topology.split(":")[1]
    bounds = (2, 4, 1) if shape == "2x4" else (2, 2, 1)
    desc = topologies.get_topology_desc(platform="tpu", topology_name=topology, chip_config_name="default",
                                        chips_per_host_bounds=bounds, num_slices=1)
    return list(desc.devices)


def lower_run(spec: RunSpec, devices):
    """The run's train step lowered for `devices` (abstract TPU devices): (Lowered, mesh)."""
    import jax  # noqa: PLC0415

    from runtime import device_batches as batches_lib
    from runtime import mesh as mesh_lib
    from runtime import model as model_lib
    from runtime import numerics
    from runtime import optimizer as optimizer_lib
    from runtime import schedule as schedule_lib
    from runtime import sharding as sharding_lib
    from runtime import train_state as train_state_lib
    from runtime import train_step as train_step_lib
    from runtime.train import pin_jax_config

    pin_jax_config()
    config = model_lib.model_config(
        spec.model, spec.dtypes, spec.kernels, document_masking=spec.data.document_masking,
        initializer=spec.init.initializer if isinstance(spec.init, ScratchInit) else "truncated_normal",
    )
    parts = train_state_lib.model_parts(config)
    mesh = mesh_lib.make_mesh(spec.mesh, devices)
    learning_rate = schedule_lib.learning_rate_schedule(spec.schedule)
    tx = optimizer_lib.make_optimizer(spec.optimizer, learning_rate)
    layout = train_state_lib.state_layout(parts, tx, mesh)
    batch_sharding = sharding_lib.batch_sharding(mesh)
    abstract_batch = {
        name: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=batch_sharding)
        for name, a in batches_lib.abstract_batch(spec.batch.sequences, spec.batch.sequence_length).items()
    }
    lowered = train_step_lib.lower_train_step(
        parts.graphdef, tx, learning_rate, layout, abstract_batch, batch_sharding,
        reduction=numerics.gradient_reduction(spec.mesh))
    return lowered, mesh


def program_key(lowered_text: str, topology: str, facts: dict) -> str:
    """sha256 of what is compiled: the lowered program, the target topology, the compiler and its flags."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": FORMAT, "topology": topology, "compiler": facts}, sort_keys=True).encode())
    digest.update(b"\n")
    digest.update(lowered_text.encode())
    return digest.hexdigest()


def compile_run(spec: RunSpec, hbm_bytes_per_chip: int, cache_dir: str | os.PathLike[str] | None = None,
                topology: str | None = None) -> dict:
    """XLA's per-chip memory and the per-step collectives of the run's train step on its TPU slice.

    Returns JSON-able data: topology, key, cached, memory (argument, output,
    alias, temp, generated code, peak bytes per chip), fits, collectives and,
    when it does not fit, the largest buffers of the compiled step. Raises
    AotUnavailable for accelerators without a compile-only target.
    """
    name = topology_name(spec, topology)
    facts = compiler_facts()
    lowered, _ = lower_run(spec, devices(name))
    key = program_key(lowered.as_text(), name, facts)
    cache_path = None if cache_dir is None else os.path.join(cache_dir, f"{key}.json")
    if cache_path is not None and os.path.exists(cache_path):
        with open(cache_path, encoding="utf-8") as f:
            result = json.load(f)
        if result.get("format") == FORMAT:
            return {**result, "cached": True}
    compiled, hlo = _compile(lowered, hbm_bytes_per_chip)
    result = {"format": FORMAT, "topology": name, "key": key, "compiler": facts, **compiled}
    if cache_path is not None:
        from compiler.store.files import write_bytes_atomic  # noqa: PLC0415

        os.makedirs(cache_dir, exist_ok=True)
        if hlo is not None:  # kept beside the result: collectives can be re-read without minutes of compiling
            write_bytes_atomic(pathlib.Path(cache_dir, f"{key}.hlo.gz"), gzip.compress(hlo.encode(), mtime=0))
        write_bytes_atomic(pathlib.Path(cache_path), json.dumps(result, indent=1, sort_keys=True).encode())
    return {**result, "cached": False}


def _compile(lowered, hbm_bytes_per_chip: int) -> tuple[dict, str | None]:
    """What XLA says of the lowered step, and the compiled HLO text (None when XLA refused it)."""
    try:
        compiled = lowered.compile()
    except Exception as err:  # XLA refuses a program that cannot fit: RESOURCE_EXHAUSTED with its buffers
        message = str(err)
        if "RESOURCE_EXHAUSTED" not in message and "Ran out of memory" not in message:
            raise
        return {"memory": None, "peak_bytes_per_chip": _needed_bytes(message), "hbm_bytes_per_chip": hbm_bytes_per_chip,
                "fits": False, "collectives": [], "largest_buffers": _error_buffers(message),
                "compile_error": message.splitlines()[0][:500]}, None
    text = compiled.as_text()
    return read_compiled(compiled, hbm_bytes_per_chip, text), text


def read_compiled(compiled, hbm_bytes_per_chip: int, text: str | None = None) -> dict:
    """Memory per chip, fit and collectives of a compiled step (and its largest buffers when it does not fit)."""
    stats = compiled.memory_analysis()
    memory = {
        "argument_bytes": int(stats.argument_size_in_bytes),
        "output_bytes": int(stats.output_size_in_bytes),
        "alias_bytes": int(stats.alias_size_in_bytes),
        "temp_bytes": int(stats.temp_size_in_bytes),
        "generated_code_bytes": int(stats.generated_code_size_in_bytes),
    }
    peak = getattr(stats, "peak_memory_in_bytes", 0) or (
        memory["argument_bytes"] + memory["output_bytes"] - memory["alias_bytes"] + memory["temp_bytes"]
        + memory["generated_code_bytes"])
    text = compiled.as_text() if text is None else text
    result = {"memory": memory, "peak_bytes_per_chip": int(peak), "hbm_bytes_per_chip": hbm_bytes_per_chip,
              "fits": int(peak) <= hbm_bytes_per_chip,
              "collectives": [c.to_json() for c in collectives(text)]}
    if not result["fits"]:
        result["largest_buffers"] = largest_buffers(text)
    return result


# ---- reading the partitioned HLO -------------------------------------------------------------

_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "bf16": 2, "f16": 2, "s32": 4, "u32": 4,
                "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16, "f8e4m3fn": 1, "f8e5m2": 1,
                "s4": 1, "u4": 1}
_SHAPE = re.compile(r"\b(" + "|".join(_DTYPE_BYTES) + r")\[([0-9,]*)\]")
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\)\s*->\s*.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*?)\s+([\w\-]+)\((.*)$")
_REDUCE_SCATTER_FUSION = "all-reduce-scatter"  # how libtpu names the computation of a fused reduce-scatter
_CHANNEL = re.compile(r"\bchannel_id=(\d+)")
_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_CALLEES = re.compile(r"\b(?:body|calls|to_apply|condition|branch_computations)=\{?%?([\w.\-]+(?:,\s*%?[\w.\-]+)*)\}?")


def shape_bytes(text: str) -> int:
    """Bytes of every array type written in `text` ("bf16[512,8192]{...}", tuples included)."""
    total = 0
    for dtype, dims in _SHAPE.findall(text):
        n = 1
        for d in filter(None, dims.split(",")):
            n *= int(d)
        total += n * _DTYPE_BYTES[dtype]
    return total


def _parse(hlo: str):
    """{computation: [(result type text, opcode, rest of line)]} and the entry computation's name."""
    computations: dict[str, list] = {}
    entry, current = None, None
    for line in hlo.splitlines():
        header = _COMPUTATION.match(line)
        if header and not line.startswith(" "):
            current = header.group(1)
            computations[current] = []
            if line.startswith("ENTRY"):
                entry = current
            continue
        if current is None:
            continue
        instruction = _INSTRUCTION.match(line)
        if instruction:
            computations[current].append((instruction.group(2), instruction.group(3), instruction.group(4)))
    return computations, entry


def collectives(hlo: str) -> list[Collective]:
    """Every collective of a compiled module per execution of its entry, loops counted by their trip counts.

    Walks the call graph from the entry computation: a collective inside a
    while body counts `known_trip_count` times per execution of the loop;
    fusions, async wrappers and conditionals count as often as they are
    called. Two libtpu rewrites are undone so that a collective counts as
    what it moves once:
      * a reduce-scatter written as an all-reduce fused with the slice each
        chip keeps (a computation named all-reduce-scatter.N) counts as the
        reduce-scatter it is, its bytes the full operand's;
      * on multi-host slices libtpu splits one all-gather into several
        `async_collective_fusion` computations that overlap its steps with
        compute; each piece carries the whole collective's result type and
        its channel_id, so the pieces a computation calls count once per
        (channel_id, kind, result shapes) (libtpu reuses a channel_id for
        unrelated collectives, so the id alone does not name one).
    """
    computations, entry = _parse(hlo)
    seen: dict[str, dict] = {}

    def visit(name: str) -> dict:
        """{collective key: [kind, executions, bytes]} of one execution of computation `name`."""
        if name in seen:
            return seen[name]
        seen[name] = {}
        totals: dict = {}
        for index, (result_type, opcode, rest) in enumerate(computations.get(name, [])):
            kind = opcode[:-len("-start")] if opcode.endswith("-start") else opcode
            if kind == "all-reduce" and name.startswith(_REDUCE_SCATTER_FUSION):
                kind = "reduce-scatter"  # TPU's fused all-reduce + dynamic-slice: a reduce-scatter on the wire
            if kind in COLLECTIVES:
                size = max(shape_bytes(result_type), shape_bytes(rest.split(")")[0]))
                if opcode.endswith("-start"):  # async: the result holds operand and destination buffers
                    size = max(shape_bytes(rest.split(")")[0]), shape_bytes(result_type) // 2)
                channel = _CHANNEL.search(rest)
                # libtpu reuses channel ids across unrelated collectives: a piece shares id, kind and shapes
                key = (("channel", channel.group(1), kind, tuple(_SHAPE.findall(result_type))) if channel
                       else (name, index))
                totals.setdefault(key, [kind, 1, size])
            trips = 1
            if opcode == "while":
                found = _TRIP_COUNT.search(rest)
                trips = int(found.group(1)) if found else 1
            for group in _CALLEES.findall(rest):
                for callee in (c.strip().lstrip("%") for c in group.split(",")):
                    if callee in computations and callee != name:
                        for key, (kind_, n, b) in visit(callee).items():
                            if key[0] == "channel" and key in totals and trips == 1:
                                continue  # another piece of a collective already counted here
                            entry_ = totals.setdefault(key, [kind_, 0, 0])
                            entry_[1] += n * trips
                            entry_[2] += b * trips
        seen[name] = totals
        return totals

    counts: dict[str, list[int]] = {}
    for kind, n, b in (visit(entry) if entry else {}).values():
        entry_ = counts.setdefault(kind, [0, 0])
        entry_[0] += n
        entry_[1] += b
    return [Collective(kind, n, b) for kind, (n, b) in sorted(counts.items())]


def wire_bytes(collectives_json: list[dict]) -> int:
    """Bytes per chip per step on the wire: an all-reduce counts twice its buffer, every other collective once.

    A ring all-reduce is a reduce-scatter plus an all-gather; on multi-host
    slices libtpu writes FSDP's all-gathers and reduce-scatters as all-reduces
    (tests/runtime/test_aot.py), and this counts what those cost.
    """
    return sum(c["bytes_per_chip"] * (2 if c["kind"] == "all-reduce" else 1) for c in collectives_json)


def fsdp_ideal_bytes(parameters: int, compute_dtype_bytes: int) -> int:
    """FSDP's traffic per chip per step: two all-gathers of the weights (forward, backward) and one reduce-scatter."""
    return 3 * parameters * compute_dtype_bytes


def largest_buffers(hlo: str, top: int = 8) -> list[dict]:
    """The largest arrays the compiled step produces (instruction name, shape, bytes), largest first."""
    found = []
    for line in hlo.splitlines():
        instruction = _INSTRUCTION.match(line)
        if instruction and "fused_computation" not in line:
            size = shape_bytes(instruction.group(2))
            if size:
                found.append((size, instruction.group(1), instruction.group(2).strip()[:120]))
    found.sort(reverse=True)
    out, names = [], set()
    for size, name, shape in found:
        if (shape, size) in names:
            continue
        names.add((shape, size))
        out.append({"name": name, "shape": shape, "bytes": size})
        if len(out) == top:
            break
    return out


def _needed_bytes(message: str) -> int:
    found = re.search(r"Used ([\d.]+)([KMGT]?)(i?B)? of", message)
    if not found:
        return 0
    scale = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[found.group(2)]
    return int(float(found.group(1)) * scale)


def _error_buffers(message: str) -> list[dict]:
    """The allocations XLA lists in an out-of-memory error (size and shape lines), as it printed them."""
    buffers = []
    for line in message.splitlines():
        found = re.search(r"Size:\s*([\d.]+)([KMGT]?)\s*$", line.strip())
        shape = _SHAPE.search(line)
        if "Shape:" in line and shape:
            buffers.append({"shape": line.split("Shape:")[1].strip()[:120], "bytes": shape_bytes(line)})
        elif found and buffers == []:
            continue
    return buffers[:8]
