"""The top-level kubeflow/ folder holds what a Kubeflow user looks for, generated from the source:
each file is kept equal to what the source renders now, and the secret they all name is the one
the settings define."""

from pathlib import Path

import dagster as dg
import yaml

from mlops_assets.model_config import model_configs
from mlops_assets.pipelines.training_pipeline import SECRET_ENV, compile_pipeline
from mlops_assets.resources import resources_for
from mlops_assets.serving.deployment import DeploymentSpec
from mlops_assets.serving.inference_service import render, validate
from mlops_assets.settings import PROJECT_ROOT, SECRET_NAME, Environment, Settings

KUBEFLOW = PROJECT_ROOT / "kubeflow"
PROD_DAGSTER = PROJECT_ROOT / "deploy" / "dagster" / "prod" / "dagster.yaml"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_the_committed_pipeline_is_what_the_source_compiles_to(tmp_path):
    compiled = compile_pipeline(tmp_path / "training_pipeline.yaml")
    assert _docs(KUBEFLOW / "training_pipeline.yaml") == _docs(compiled), (
        "kubeflow/training_pipeline.yaml is stale: run `mlops pipeline compile`"
    )


def test_the_compiled_pipeline_has_its_steps_parameters_and_secrets(tmp_path):
    from kfp.components import load_component_from_file

    path = compile_pipeline(tmp_path / "training_pipeline.yaml")
    docs = _docs(path)
    spec = docs[0]
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"fetch-dataset", "train-model", "evaluate-model", "register-model"}
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {
        "dvc_md5",
        "config_json",
        "lineage_json",
    }
    assert tasks["train-model"]["dependentTasks"] == ["fetch-dataset"]
    # Typed artifacts between steps.
    artifacts = spec["components"]["comp-train-model"]["outputDefinitions"]["artifacts"]
    assert artifacts["model"]["artifactType"]["schemaTitle"] == "system.Model"
    assert load_component_from_file(str(path)).name == "model-training"
    # Secrets come from the cluster through kfp-kubernetes, on every step.
    kubernetes = next(d for d in docs if "platforms" in d)["platforms"]["kubernetes"]
    executors = kubernetes["deploymentSpec"]["executors"]
    assert len(executors) == 4
    assert all(e["secretAsEnv"][0]["secretName"] == SECRET_NAME for e in executors.values())


def test_the_example_inference_service_is_what_prod_deploy_renders():
    config = model_configs()["churn"]
    (example,) = _docs(KUBEFLOW / "manifests" / f"inferenceservice.{config.name}.example.yaml")
    annotations = example["metadata"]["annotations"]
    spec = DeploymentSpec(
        model=config.name,
        champion_version=annotations["mlops/champion-version"],
        challenger_version=annotations["mlops/challenger-version"],
        canary_percent=example["spec"]["predictor"]["canaryTrafficPercent"],
        actor=annotations["mlops/actor"],
        reason=annotations["mlops/reason"],
    )
    prod = Settings(env=Environment.PROD)
    assert example == render(config, spec, prod.namespace, prod.image, prod.kserve_deployment_mode)
    validate(example)


def _env_vars_of(resource) -> set[str]:
    return {
        value.env_var_name for value in vars(resource).values() if isinstance(value, dg.EnvVar)
    } | {
        name
        for value in vars(resource).values()
        if isinstance(value, dg.ConfigurableResource)
        for name in _env_vars_of(value)
    }


def test_one_secret_name_and_it_carries_every_secret_prod_reads():
    (secret,) = _docs(KUBEFLOW / "manifests" / "mlops-secrets.example.yaml")
    assert secret["metadata"]["name"] == SECRET_NAME
    prod_env_vars = set().union(
        *(
            _env_vars_of(r)
            for r in resources_for(Environment.PROD, Settings(env=Environment.PROD)).values()
        )
    )
    missing = (set(SECRET_ENV) | prod_env_vars) - set(secret["stringData"])
    assert prod_env_vars and not missing, f"secret keys missing from the example: {missing}"
    launcher = yaml.safe_load(PROD_DAGSTER.read_text())["run_launcher"]["config"]
    assert launcher["env_secrets"] == [SECRET_NAME]
