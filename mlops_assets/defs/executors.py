import dagster as dg

from mlops_assets.settings import Environment


def executor_for(env: Environment) -> dg.ExecutorDefinition:
    """prod runs every step in its own Kubernetes Job; elsewhere steps are local processes."""
    if env is Environment.PROD:
        from dagster_k8s import k8s_job_executor  # only the prod location needs the k8s client

        return k8s_job_executor.configured({"max_concurrent": 8})
    return dg.multiprocess_executor.configured({"max_concurrent": 2})
