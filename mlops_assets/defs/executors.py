import dagster as dg

from mlops_assets.settings import Environment


def executor_for(env: Environment) -> dg.ExecutorDefinition:
    """prod runs every step in its own Kubernetes Job. Locally the steps of a run share its
    process: a step process would re-import the stack (~3 s) for steps that take about as long."""
    if env is Environment.PROD:
        from dagster_k8s import k8s_job_executor  # only the prod location needs the k8s client

        return k8s_job_executor.configured({"max_concurrent": 8})
    return dg.in_process_executor
