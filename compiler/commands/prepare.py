"""`runix prepare PATH...`: tokenize every fsspec source of a locked spec set on Apache Beam.

    runix prepare specs/own --workers 2                      # DirectRunner, 2 worker processes, here
    runix prepare specs/own --runner dataflow --project P --region us-central1 \\
        --temp-location gs://bucket/runix --stage-url gs://bucket/runix/pieces --render-only

Each distinct (source content, reader options, tokenizer) becomes one token
shard under the data root, the shard the trainer opens (dataprep.beam_tokenize:
byte-identical to the in-process build whatever the runner and worker count),
published into the store (`--store URL`, default the project's; as `runix
lock` publishes its shards), so launching runs afterwards tokenizes nothing on
any host that shares the store. `--runner dataflow` runs the
same pipeline with standard Dataflow options; `--render-only` prints those
options and writes nothing (no cloud call). Needs a fresh lock, like launch.
"""

from __future__ import annotations

import pathlib

from rich.table import Table
from rich.text import Text

from compiler.problems import Location, Problem, SpecError

BUILTIN = "builtin://"


def register(subparsers) -> None:
    parser = subparsers.add_parser("prepare", help="tokenize the spec set's file sources on Apache Beam, once")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="spec files or folders (one spec set)")
    parser.add_argument("--lockfile", metavar="FILE", help="lockfile (default: <project>/lockfiles/<name>.lock.json)")
    parser.add_argument("--data-root", metavar="DIR", help="where shards are written (default: <project>/.runix/data)")
    parser.add_argument("--runner", choices=("direct", "dataflow"), default="direct")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (direct) or Dataflow workers")
    parser.add_argument("--project", help="Google Cloud project (dataflow)")
    parser.add_argument("--region", help="Dataflow region (dataflow)")
    parser.add_argument("--temp-location", help="gs:// folder for Dataflow's temp and staging files (dataflow)")
    parser.add_argument("--stage-url", help="fsspec URL the workers write their pieces to (dataflow: a bucket)")
    parser.add_argument("--render-only", action="store_true", help="print the pipeline options; run nothing")
    parser.add_argument("--store", metavar="URL", help="store the shards are published into (default: "
                                                       "<project>/.runix/store)")
    parser.set_defaults(func=run)


def run(args, console) -> int:
    from compiler.lock import load_locked_spec_set, project_root, require_fully_resolved
    from compiler.store import default_data_root
    from dataprep import beam_tokenize

    pipeline_args = _pipeline_args(args, beam_tokenize)
    if args.render_only:
        console.print(Text("pipeline options (standard Apache Beam flags; nothing was run):"))
        console.print(Text(f"  {beam_tokenize.render_options(pipeline_args)}"), soft_wrap=True)
        return 0
    from compiler.commands.store import open_store
    from dataprep.store_shards import publish

    locked = load_locked_spec_set(args.paths, args.lockfile)
    require_fully_resolved(locked.lock, locked.spec_set.runs)
    store = open_store(args.store)  # reachable before anything is prepared
    root = pathlib.Path(args.data_root) if args.data_root else default_data_root(project_root(pathlib.Path.cwd()))
    table = Table(title="token shards", title_justify="left")
    for column in ("source", "shard", "tokens", "documents"):
        table.add_column(column)
    done: dict[str, object] = {}
    problems = []
    for run in locked.spec_set.runs:
        for name, shard in _prepare_run(run, locked.lock, root, pipeline_args, args.stage_url, problems):
            if shard.path.name not in done:
                done[shard.path.name] = shard
                table.add_row(Text(f"{name} {shard.source}"), Text(shard.path.name[:16]), Text(f"{shard.num_tokens:,}"),
                              Text(f"{shard.num_documents:,}"))
    if problems:
        raise SpecError(problems)
    console.print(table)
    added = sum(publish(store, shard) for _, shard in sorted(done.items()))
    console.print(Text(f"prepared {len(done)} shard(s) under {root / 'shards'}; in {store.url} ({added} published now)"))
    return 0


def _pipeline_args(args, beam_tokenize) -> list[str]:
    if args.runner == "direct":
        return beam_tokenize.direct_options(max(1, args.workers), multi_process=True)
    missing = [flag for flag, value in (("--project", args.project), ("--region", args.region),
                                        ("--temp-location", args.temp_location), ("--stage-url", args.stage_url))
               if not value]
    if missing:
        raise SpecError([Problem(Location(""), "runix prepare", f"--runner dataflow needs {', '.join(missing)}")])
    return beam_tokenize.dataflow_options(project=args.project, region=args.region, temp_location=args.temp_location,
                                          num_workers=max(1, args.workers))


def _prepare_run(run, lock, root, pipeline_args, stage_url, problems):
    from dataprep.beam_tokenize import build_shard_on_beam
    from dataprep.external import SourceIntegrityError
    from dataprep.readers import ReaderOptions
    from runtime import data_source  # jax-free: spec → tokenizer artifact, as the trainer chooses it
    from runtime.errors import BadInput

    entries = lock.entries_for(run)
    spec = run.spec
    where = f"runs[{run.name}]"
    try:
        builtin = spec.data.tokenizer == f"{BUILTIN}bpe"
        manifests = {}
        if builtin:
            from dataprep.builtin_corpora import builtin_names
            from dataprep.corpora import prepare_corpus

            manifests = {name: prepare_corpus(name, root) for name in builtin_names()}
        artifact = data_source.run_tokenizer(spec, root, entries, manifests)
    except (BadInput, OSError, RuntimeError) as e:
        problems.append(Problem(run.location, f"{where}.data.tokenizer", str(e)))
        return
    for name, src in sorted(spec.data.sources.items()):
        locked = (entries["sources"].get(name) or {}).get("locked") or {}
        if src.uri.startswith(BUILTIN) or locked.get("type") != "files":
            continue
        options = ReaderOptions.of(src)
        try:
            yield name, build_shard_on_beam(name, src.uri, locked, artifact, root, options=options,
                                            pipeline_args=pipeline_args, stage_url=stage_url)
        except SourceIntegrityError as e:
            problems.append(Problem(run.location, f"{where}.data.sources.{name}", str(e)))
