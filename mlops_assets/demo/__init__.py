"""`mlops demo`: the main job, the whole loop on the embedded profile, told in a few lines.

`run_demo` prepares the world (the persisted one, or a new one from the command's options), runs the
stages of `steps.py` under a quiet console (`console.py`: a line per stage, everything else in
data/logs/), prints the timeline, and always stops what it started (the daemon, the model server
unless asked to keep it, any step still running on Ctrl-C).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlops_assets.demo.runs import PLANNED_EVENTS

if TYPE_CHECKING:
    from mlops_assets.model_config import ModelConfig
    from mlops_assets.settings import Settings
    from mlops_assets.world import World

# Generated from the world: rebuilt when the world changes (landing, warehouse, gold, features).
WORLD_STATE = ("landing", "warehouse.duckdb", "warehouse.duckdb.wal", "gold", "feast", "monitoring")


@dataclass(frozen=True)
class DemoOptions:
    customers: int | None = None
    days: int | None = None
    drift_day: int | None = None
    no_drift: bool = False
    keep_serving: bool = False
    model: str | None = None  # the model whose story is told (default: the only one configured)


def prepare_world(settings: Settings, options: DemoOptions) -> tuple[World, bool]:
    """The world the demo runs in: the data folder's, with the options applied. A changed world
    replaces the old one and the data generated from it. Returns (world, changed)."""
    from mlops_assets.world import load_world, save_world, world_path

    current = load_world(settings.data_dir)
    world = current.with_options(
        n_customers=options.customers,
        days=options.days,
        drift_day=options.drift_day,
        no_drift=options.no_drift,
    )
    exists = world_path(settings.data_dir).exists()
    changed = exists and world != current
    if changed:
        for name in WORLD_STATE:
            path = settings.data_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    if changed or not exists:
        save_world(settings.data_dir, world)
    return world, changed


def run_demo(options: DemoOptions) -> int:
    """Returns the exit code: 0 when the story ran to its end, 1 on a failure, 130 on Ctrl-C."""
    from mlops_assets.demo import runs
    from mlops_assets.demo.plan import Plan
    from mlops_assets.resources import open_resources
    from mlops_assets.settings import get_settings

    settings = get_settings()
    world, changed = prepare_world(settings, options)
    config = _demo_model(options.model)
    plan = Plan(world, label_window_days=config.label_window_days).check()
    # Ctrl-C and SIGTERM stop the demo through the clean-up below, whatever it inherited: a
    # shell's background job (`&`, nohup, some CI runners) starts with SIGINT ignored, and then
    # only Dagster's run-time handlers would notice a Ctrl-C, between runs nothing would.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    runs.watch_interrupts()
    os.environ.update(PLANNED_EVENTS)
    with open_resources(settings) as res:
        return _run(settings, plan, config, res, options, changed)


def _demo_model(name: str | None) -> ModelConfig:
    from mlops_assets.model_config import model_configs

    configs = model_configs()
    if name is None and len(configs) == 1:
        return next(iter(configs.values()))
    if name not in configs:
        raise ValueError(f"the demo needs a model: one of {sorted(configs)} (--model)")
    return configs[name]


def _run(settings, plan, config, res, options: DemoOptions, changed: bool) -> int:
    from mlops_assets.demo import runs
    from mlops_assets.demo.console import DemoConsole
    from mlops_assets.demo.steps import Demo
    from mlops_assets.demo.timeline import Timeline, save_report, write_timeline

    demo = Demo(settings, plan, config, out=None, timeline=Timeline(), res=res)  # type: ignore[arg-type]
    code = 0
    with DemoConsole(settings.data_dir / "logs") as out:
        demo.out = out
        out.line(f"[bold]mlops demo[/] · profile {settings.env.value} · data {settings.data_dir}")
        world = plan.world.describe() + (" (new: data regenerated)" if changed else "")
        out.line(f"world: {world}")
        try:
            _stages(demo)
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut clean-up
            out.error("interrupted; stopping what the demo started")
            runs.stop_children()
            code = 130
        except Exception as err:  # a failed stage: its message, the log for the rest
            out.error(f"{err} (details: {out.log_path})")
            code = 1
        finally:
            demo.stop_background()
            # The model server flushes its inference log while the daemon stops.
            server_stop = threading.Thread(target=res.deployer.stop, args=(config.name,))
            if code or not options.keep_serving:
                server_stop.start()
            if demo.daemon is not None:
                runs.stop_daemon(demo.daemon)
            if server_stop.is_alive():
                server_stop.join()
        if code == 0:
            _report(demo, write_timeline(res.lakehouse.catalog(), demo.timeline), options)
            demo.timings.update({f"{k}_s": v for k, v in out.durations.items()})
            demo.timings["total_s"] = round(out.elapsed(), 1)
            save_report(settings.data_dir, demo.timings)
        out.line(f"log: {out.log_path}")
    return code


def _stages(demo) -> None:
    out, plan = demo.out, demo.plan
    with out.stage("setup", "instance, dbt manifest, daemon") as s:
        s.figure = demo.setup(s)
    with out.stage("lakehouse", "landing -> dbt -> Feast") as s:
        s.figure = demo.lakehouse(s)
    with out.stage("training", "dataset -> KFP -> MLflow -> gate -> deploy") as s:
        s.figure = demo.first_model(s)
    with out.stage("scoring", f"{plan.score_days[0]} .. {plan.score_days[1]} into Iceberg") as s:
        s.figure = demo.scoring(s)
    with out.stage("monitoring", "performance, drift, data quality") as s:
        s.figure = demo.monitoring(s)
    if not demo.expects_retraining():
        with out.stage("sensor", "the daemon's retraining sensor") as s:
            s.figure = demo.no_degradation(s)
        return
    with out.stage("retraining", "the daemon's sensor -> retrain run") as s:
        s.figure = demo.retraining(s)
    if demo.alias("challenger") is not None:
        with out.stage("canary", "replay labelled days through the split") as s:
            s.figure = demo.canary(s)


def _report(demo, table: str, options: DemoOptions) -> None:
    out = demo.out
    out.line(f'timeline ([bold]mlops sql "select * from iceberg.{table} order by occurred_at"[/]):')
    for event in demo.timeline.events:
        day = f" (data day {event['data_day']})" if event["data_day"] else ""
        version = f" v{event['model_version']}" if event["model_version"] else ""
        when = f"{event['occurred_at']:%H:%M:%S}"
        out.line(f"  {when} {event['event']}{version}{day}: {event['detail'][:110]}")
    serving = (
        "model server kept running (`mlops stop`)"
        if options.keep_serving
        else "model server stopped"
    )
    out.line(
        f"[bold]done[/] in {out.elapsed():.0f}s; {serving}. `mlops status` shows the state; "
        "`make dev` opens the UI."
    )
