"""The code location's graph as a snapshot: every asset key (with group, kinds, upstream keys and
partitioning), check, job, schedule, sensor and resource. A change to the graph is a diff in
`__snapshots__/test_definitions.ambr`; accept an intended one with `pytest --snapshot-update`.
Partition keys are left out (they follow the world, not the code).

The few assertions below the snapshot pin what the snapshot cannot say by itself: which checks
block, which executor each environment runs on."""

import dagster as dg

from mlops_assets.defs.landing.checks import landing_quality_checks
from mlops_assets.resources import executor_for
from mlops_assets.settings import Environment


def _defs():
    from mlops_assets.definitions import load

    return load()


def _partitioning(partitions_def) -> str | None:
    if partitions_def is None:
        return None
    return type(partitions_def).__name__


def graph_inventory(defs: dg.Definitions) -> dict:
    """Everything a reviewer sees in the UI's asset graph and automation pages, as plain data."""
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "upstream": sorted(k.to_user_string() for k in node.parent_keys),
            "partitioning": _partitioning(node.partitions_def),
        }
    checks = sorted(
        f"{k.asset_key.to_user_string()}:{k.name}" + (" (blocking)" if _blocking(graph, k) else "")
        for k in graph.asset_check_keys
    )
    jobs = {
        job.name: sorted(k.to_user_string() for k in job.asset_layer.selected_asset_keys)
        for job in sorted(repo.get_all_jobs(), key=lambda j: j.name)
        if not job.name.startswith("__")
    }
    schedules = {
        s.name: {"cron": s.cron_schedule, "job": s.job_name, "timezone": s.execution_timezone}
        for s in sorted(repo.schedule_defs, key=lambda s: s.name)
    }
    sensors = {
        s.name: {
            "type": type(s).__name__,
            "jobs": sorted(j.name for j in s.jobs) if s.has_jobs else [],
            "default_status": s.default_status.value,
        }
        for s in sorted(repo.sensor_defs, key=lambda s: s.name)
    }
    resources = {name: type(resource).__name__ for name, resource in sorted(defs.resources.items())}
    return {
        "assets": assets,
        "checks": checks,
        "jobs": jobs,
        "schedules": schedules,
        "sensors": sensors,
        "resources": resources,
    }


def _blocking(graph, check_key: dg.AssetCheckKey) -> bool:
    return graph.get_check_spec(check_key).blocking


def test_the_graph_matches_the_snapshot(snapshot):
    assert graph_inventory(_defs()) == snapshot


def test_landing_checks_block_downstream_materializations():
    assert landing_quality_checks.check_specs
    assert all(spec.blocking for spec in landing_quality_checks.check_specs)


def test_prod_uses_the_kubernetes_executor():
    assert executor_for(Environment.PROD).name == "k8s"
    assert executor_for(Environment.LOCAL).name == "in_process"


def test_workspace_file_and_dg_project_name_the_same_code_location():
    """`dagster dev`/`dg` read [tool.dg]; workspace-file tools read workspace.yaml."""
    import tomllib

    import yaml

    from mlops_assets.settings import PROJECT_ROOT

    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["dg"]["project"]
    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    assert entry["python_module"]["module_name"] == project["code_location_target_module"]
    assert entry["python_module"]["location_name"] == project["code_location_name"]
