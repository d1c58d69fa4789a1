"""Lower a plan to an XManager experiment on this machine (xm_local, no Docker).

One work unit per run not yet built, identified by the run hash; a child's
work unit is added only after its parents' units completed, so the
initialization chain is honoured by construction. A failed run is recorded
with its log path, its descendants are skipped, and unrelated runs go on.

Each work unit runs `python -m runtime.build --store URL --hash HASH`: the
job itself takes the store's build lock, trains and publishes the entry, so
the same job works on a cluster where this launcher is long gone. XManager's
local executor does not make `identity` idempotent (it logs that it does not
support it), so the launcher keeps at most one unit per hash itself, and the
store's completion marker makes a relaunch a cache hit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import sys
from collections.abc import Callable, Sequence

RUN_BUILT, RUN_FAILED, RUN_SKIPPED = "built", "failed", "skipped"


@dataclasses.dataclass(frozen=True)
class LaunchItem:
    """One run of the plan as the launcher needs it."""

    hash: str
    name: str
    parent_hashes: tuple[str, ...]  # parents inside this launch (already-built ones are not waited for)
    log_path: str


@dataclasses.dataclass
class LaunchOutcome:
    status: dict[str, str] = dataclasses.field(default_factory=dict)  # hash → built|failed|skipped
    reasons: dict[str, str] = dataclasses.field(default_factory=dict)


def configure_xmanager(db_dir: pathlib.Path) -> None:
    """Point XManager's sqlite database into the store (not $HOME) and parse its flags.

    XManager reads absl flags; runix's CLI is argparse, so the flags XManager
    needs are parsed here explicitly, once, before the experiment is created.
    """
    from absl import flags

    db_dir.mkdir(parents=True, exist_ok=True)
    config = db_dir / "db.yaml"
    config.write_text(
        "sql_connector: sqlite\n"
        "sql_connection_settings:\n"
        "  backend: sqlite\n"
        f"  db_name: {db_dir / 'experiments.sqlite3'}\n"
    )
    if not flags.FLAGS.is_parsed():
        flags.FLAGS(["runix", f"--xm_db_yaml_config_path={config}"], known_only=True)
    else:
        flags.FLAGS.xm_db_yaml_config_path = str(config)


def build_command(store_url: str, run_hash: str, data_root: str | None = None) -> list[str]:
    """Arguments of the build job (after the Python interpreter)."""
    command = ["-m", "runtime.build", "--store", store_url, "--hash", run_hash]
    return command + ["--data-root", data_root] if data_root else command


def wait_command(store_url: str, parent_hash: str) -> list[str]:
    """Arguments of the job that returns once `parent_hash` is built (a child's init container on a cluster)."""
    return ["-m", "runtime.wait", "--store", store_url, "--hash", parent_hash]


async def run_experiment(
    items: Sequence[LaunchItem],
    store_url: str,
    title: str,
    parallel: int,
    on_event: Callable[[str, LaunchItem, str], None],
    outcome: LaunchOutcome,
    data_root: str | None = None,
) -> None:
    """Add one work unit per item, parents first, at most `parallel` at a time; fill `outcome`."""
    from xmanager import xm, xm_local

    by_hash = {item.hash: item for item in items}
    done: dict[str, asyncio.Event] = {item.hash: asyncio.Event() for item in items}
    slots = asyncio.Semaphore(max(1, parallel))

    async with xm_local.create_experiment(experiment_title=title) as experiment:
        [executable] = experiment.package([
            xm.binary(path=sys.executable, args=[], executor_spec=xm_local.LocalSpec()),
        ])

        async def build(item: LaunchItem) -> None:
            try:
                for parent in item.parent_hashes:
                    await done[parent].wait()
                broken = [p for p in item.parent_hashes if outcome.status.get(p) in (RUN_FAILED, RUN_SKIPPED)]
                if broken:
                    outcome.status[item.hash] = RUN_SKIPPED
                    outcome.reasons[item.hash] = f"parent {by_hash[broken[0]].name} did not build"
                    on_event(RUN_SKIPPED, item, outcome.reasons[item.hash])
                    return
                async with slots:
                    on_event("start", item, "")
                    job = xm.Job(executable, executor=xm_local.Local(), args=build_command(store_url, item.hash, data_root))
                    unit = await experiment.add(job, identity=item.hash)
                    try:
                        await unit.wait_until_complete()
                    except Exception as err:  # xm raises ExperimentUnitFailedError (or RuntimeError) on a non-zero exit
                        outcome.status[item.hash] = RUN_FAILED
                        outcome.reasons[item.hash] = f"{type(err).__name__}: {err}"
                        on_event(RUN_FAILED, item, outcome.reasons[item.hash])
                        return
                    outcome.status[item.hash] = RUN_BUILT
                    on_event(RUN_BUILT, item, "")
            finally:
                done[item.hash].set()

        await asyncio.gather(*(build(item) for item in items))


def launch(
    items: Sequence[LaunchItem],
    store_url: str,
    db_dir: pathlib.Path,
    title: str,
    parallel: int,
    on_event: Callable[[str, LaunchItem, str], None],
    data_root: str | None = None,
) -> LaunchOutcome:
    """Run the experiment to completion; failures are in the outcome, not raised."""
    configure_xmanager(db_dir)
    outcome = LaunchOutcome()
    try:
        asyncio.run(run_experiment(items, store_url, title, parallel, on_event, outcome, data_root))
    except Exception:
        # xm_local re-raises a failed unit's error when the experiment context
        # exits; such failures are already recorded in the outcome.
        if not any(status == RUN_FAILED for status in outcome.status.values()):
            raise
    return outcome
