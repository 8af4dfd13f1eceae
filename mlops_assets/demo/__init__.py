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
    model: str | None = None  # only this model's story (default: every configured model)
    fraud_drift_day: int | None = None  # the simulated shop's fraud pattern changes that day


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
        fraud_drift_day=options.fraud_drift_day,
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
    configs = _demo_models(options.model)
    # Each model's calendar follows its label window; the world is the same.
    plans = {c.name: Plan(world, label_window_days=c.label_window_days).check() for c in configs}
    # Ctrl-C and SIGTERM stop the demo through the clean-up below, whatever it inherited: a
    # shell's background job (`&`, nohup, some CI runners) starts with SIGINT ignored, and then
    # only Dagster's run-time handlers would notice a Ctrl-C, between runs nothing would.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    runs.watch_interrupts()
    os.environ.update(PLANNED_EVENTS)
    with open_resources(settings) as res:
        return _run(settings, plans, configs, res, options, changed)


def _demo_models(name: str | None) -> list[ModelConfig]:
    from mlops_assets.model_config import model_configs

    configs = model_configs()
    if not configs:
        raise ValueError("no model config in model_configs/: the demo has nothing to train")
    if name is None:
        return list(configs.values())
    if name not in configs:
        raise ValueError(f"unknown model {name!r}: one of {sorted(configs)} (--model)")
    return [configs[name]]


def _run(settings, plans, configs, res, options: DemoOptions, changed: bool) -> int:
    from mlops_assets.demo import runs
    from mlops_assets.demo.console import DemoConsole
    from mlops_assets.demo.steps import Demo
    from mlops_assets.demo.timeline import Timeline, save_report, write_timeline

    demo = Demo(settings, plans, configs, out=None, timeline=Timeline(), res=res)  # type: ignore[arg-type]
    code = 0
    with DemoConsole(settings.data_dir / "logs") as out:
        demo.out = out
        out.line(f"[bold]mlops demo[/] · profile {settings.env.value} · data {settings.data_dir}")
        world = demo.plan.world.describe() + (" (new: data regenerated)" if changed else "")
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
            names = [c.name for c in configs]
            server_stop = threading.Thread(target=res.deployer.stop_all, args=(names,))
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
    """The shared stages once, then each model's (one line per stage, a clause per model); the
    models whose monitors degraded go on to retraining and a canary, the others' sensors must
    stay quiet."""
    out = demo.out
    with out.stage("setup", "instance, dbt manifest, daemon") as s:
        s.figure = demo.setup(s)
    with out.stage("lakehouse", "landing -> dbt -> Feast") as s:
        s.figure = demo.lakehouse(s)
    with out.stage("training", "dataset -> KFP -> MLflow -> gate -> deploy") as s:
        s.figure = demo.each(demo.first_model, s)
    with out.stage("scoring", "each model's days into Iceberg") as s:
        s.figure = demo.each(demo.scoring, s)
    with out.stage("monitoring", "performance, drift, data quality") as s:
        s.figure = demo.each(demo.monitoring, s)
    degraded = [c for c in demo.configs if demo.use(c).expects_retraining()]
    quiet = [c for c in demo.configs if c not in degraded]
    if quiet:
        with out.stage("sensor", "the daemon's retraining sensors") as s:
            s.figure = demo.each(demo.no_degradation, s, quiet)
    for config in degraded:
        demo.use(config)
        with out.stage("retraining", f"{config.name}: the daemon's sensor -> retrain run") as s:
            s.figure = demo.retraining(s)
        if demo.alias("challenger") is not None:
            with out.stage("canary", f"{config.name}: replay labelled days through the split") as s:
                s.figure = demo.canary(s)


def _report(demo, table: str, options: DemoOptions) -> None:
    out = demo.out
    out.line(f'timeline ([bold]mlops sql "select * from iceberg.{table} order by occurred_at"[/]):')
    for event in demo.timeline.events:
        day = f" (data day {event['data_day']})" if event["data_day"] else ""
        version = f" v{event['model_version']}" if event["model_version"] else ""
        when = f"{event['occurred_at']:%H:%M:%S}"
        model = f"{event['model']} " if event.get("model") else ""
        out.line(f"  {when} {model}{event['event']}{version}{day}: {event['detail'][:110]}")
    serving = (
        "model server kept running (`mlops stop`)"
        if options.keep_serving
        else "model server stopped"
    )
    out.line(
        f"[bold]done[/] in {out.elapsed():.0f}s; {serving}. `mlops status` shows the state; "
        "`make dev` opens the UI."
    )
