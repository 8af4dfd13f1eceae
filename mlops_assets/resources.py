"""The engines, each behind one small interface with an embedded and a production implementation,
and `resources_for(env)`: the one place that picks the set for an environment.

| interface                  | embedded (local, ci)                 | production                       |
|----------------------------|--------------------------------------|----------------------------------|
| LakehouseCatalogResource   | pyiceberg SQL catalog in the data dir | Iceberg REST catalog (+ S3)      |
| WarehouseResource          | DuckDB (dbt's file; analyst SQL over Iceberg) | Trino                   |
| FeatureStoreResource       | Feast: monotonic SQLite online store | Feast: feature_store.prod.yaml   |
| ModelRegistryResource      | MLflow on SQLite, local artifacts    | MLflow on PostgreSQL + S3        |
| PipelineRunnerResource     | kfp.local (subprocess runner)        | kfp.Client against a cluster     |
| DeployerResource           | local KServe model server            | KServe InferenceService          |

The services profile (`MLOPS_ENV=services`) takes production's implementations where they run on
one node (REST catalog and S3 from SeaweedFS, Feast's SQL registry on PostgreSQL and Redis online
store, MLflow on PostgreSQL + S3) and the embedded ones where they cannot (DuckDB for Trino,
kfp.local for a cluster, the local model server for KServe).

Each holds its real configuration as fields (secrets as `dg.EnvVar`, resolved when a run or
`open_resources` starts) and hands library code what it needs: a pyiceberg catalog, a Feast store,
a registry, an object that answers SQL, a runner, a deployer. Library code never asks which
environment it runs in. The deployers live beside the serving code they drive
(`mlops_assets/serving/deployers.py`); this module still picks which one an environment gets.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg

# DeployerResource is re-exported: the wiring takes every resource interface from this module.
from mlops_assets.serving.deployers import DeployerResource as DeployerResource
from mlops_assets.serving.deployers import InferenceServiceDeployer, LocalDeployer
from mlops_assets.settings import PROJECT_ROOT, Environment, Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore
    from pyiceberg.catalog import Catalog

    from mlops_assets.model_config import ModelConfig
    from mlops_assets.pipelines.runner import TrainingRun
    from mlops_assets.training.registry import Registry

# -- the Iceberg catalog ---------------------------------------------------------------------------


class LakehouseCatalogResource(dg.ConfigurableResource, ABC):
    """Where the Iceberg tables live (predictions, inference log, monitoring, timeline)."""

    @abstractmethod
    def catalog(self) -> Catalog: ...


class SqlCatalogResource(LakehouseCatalogResource):
    folder: str  # catalog.db and warehouse/ inside

    def catalog(self) -> Catalog:
        from mlops_assets.lakehouse.catalog import sql_catalog

        return sql_catalog(self.folder)


class RestCatalogResource(LakehouseCatalogResource):
    uri: str
    warehouse: str
    credential: str | None = None  # `client-id:secret` for the catalog's OAuth2 endpoint
    s3_endpoint: str | None = None
    s3_region: str | None = None  # None: looked up per bucket (AWS)

    def catalog(self) -> Catalog:
        from mlops_assets.lakehouse.catalog import rest_catalog

        return rest_catalog(
            self.uri, self.warehouse, self.credential, self.s3_endpoint, self.s3_region
        )


# -- the warehouse ---------------------------------------------------------------------------------


class WarehouseResource(dg.ConfigurableResource, ABC):
    """The tables dbt builds (`query`, schema-qualified names like gold.churn_labels) and analysts'
    Trino SQL over the Iceberg tables (`analyst_sql`)."""

    @abstractmethod
    def query(self, sql: str) -> pd.DataFrame: ...

    @abstractmethod
    def analyst_sql(self, sql: str) -> pd.DataFrame: ...


class DuckDBWarehouse(WarehouseResource):
    path: str
    lakehouse: LakehouseCatalogResource

    def query(self, sql: str) -> pd.DataFrame:
        from mlops_assets.lakehouse.warehouse import duckdb_query

        return duckdb_query(self.path, sql)

    def analyst_sql(self, sql: str) -> pd.DataFrame:
        from mlops_assets.lakehouse.sql import run_sql

        return run_sql(self.lakehouse.catalog(), sql)


class TrinoWarehouse(WarehouseResource):
    host: str
    port: int = 8443
    user: str
    password: str | None = None
    catalog_name: str = "iceberg"
    http_scheme: str = "https"
    ca_bundle: str | None = None  # a private CA's certificates (PEM); default: the system's

    def query(self, sql: str) -> pd.DataFrame:
        from mlops_assets.lakehouse.warehouse import TrinoConnection, trino_query

        connection = TrinoConnection(
            self.host,
            self.port,
            self.user,
            self.password,
            self.catalog_name,
            self.http_scheme,
            self.ca_bundle or True,
        )
        return trino_query(connection, sql)

    def analyst_sql(self, sql: str) -> pd.DataFrame:
        return self.query(sql)  # Trino speaks the analysts' dialect


# -- the feature store -----------------------------------------------------------------------------


class FeatureStoreResource(dg.ConfigurableResource, ABC):
    """The Feast store over feature_repo/: one repository, an embedded and a production config."""

    @abstractmethod
    def store(self) -> FeatureStore: ...


class EmbeddedFeatureStore(FeatureStoreResource):
    data_dir: str  # registry and SQLite online store in <data_dir>/feast

    def store(self) -> FeatureStore:
        from mlops_assets.features.store import embedded_store

        return embedded_store(self.data_dir)


class ServicesFeatureStore(FeatureStoreResource):
    data_dir: str  # the generated feature_store.yaml (for the Feast CLI) in <data_dir>/feast
    registry_url: str  # SQLAlchemy URL of the SQL registry
    redis_connection: str  # Feast's `host:port,db=N[,password=...]`

    def store(self) -> FeatureStore:
        from mlops_assets.features.store import services_store

        return services_store(self.data_dir, self.registry_url, self.redis_connection)


class ProductionFeatureStore(FeatureStoreResource):
    config_path: str = str(PROJECT_ROOT / "feature_repo" / "feature_store.prod.yaml")

    def store(self) -> FeatureStore:
        from mlops_assets.features.store import store_from_yaml

        return store_from_yaml(self.config_path)


# -- the model registry ----------------------------------------------------------------------------


class ModelRegistryResource(dg.ConfigurableResource):
    """MLflow tracking and registry, and the promotion decision log (a SQLAlchemy URL)."""

    tracking_uri: str
    artifact_root: str
    decisions_url: str

    def registry(self) -> Registry:
        from mlops_assets.training.registry import Registry

        return Registry(self.tracking_uri, self.artifact_root, self.decisions_url)


# -- the pipeline runner ---------------------------------------------------------------------------


class PipelineRunnerResource(dg.ConfigurableResource, ABC):
    """Runs the KFP training pipeline for a model config on a DVC dataset version."""

    @abstractmethod
    def run(
        self, config: ModelConfig, dvc_md5: str, lineage: dict[str, str], registry: Registry
    ) -> TrainingRun: ...


class LocalPipelineRunner(PipelineRunnerResource):
    pipeline_root: str

    def run(self, config, dvc_md5, lineage, registry) -> TrainingRun:
        from mlops_assets.pipelines.runner import run_locally

        return run_locally(self.pipeline_root, config, dvc_md5, lineage, registry)


class KfpClusterRunner(PipelineRunnerResource):
    host: str
    experiment: str = "mlops"
    timeout_seconds: int = 3600

    def run(self, config, dvc_md5, lineage, registry) -> TrainingRun:
        from mlops_assets.pipelines.runner import run_on_cluster

        return run_on_cluster(
            self.host, self.experiment, self.timeout_seconds, config, dvc_md5, lineage, registry
        )


# -- the one choice --------------------------------------------------------------------------------


def resources_for(env: Environment, settings: Settings | None = None) -> dict[str, Any]:
    """The resource set of an environment, by the names assets and ops ask for."""
    settings = settings or get_settings()
    if env is Environment.PROD:
        lakehouse: LakehouseCatalogResource = RestCatalogResource(
            uri=settings.iceberg_rest_uri,
            warehouse=settings.iceberg_warehouse,
            credential=dg.EnvVar("MLOPS_ICEBERG_CREDENTIAL"),
            s3_endpoint=settings.s3_endpoint,
        )
        return {
            "lakehouse": lakehouse,
            "warehouse": TrinoWarehouse(
                host=settings.trino_host,
                port=settings.trino_port,
                user=settings.trino_user,
                password=dg.EnvVar("TRINO_PASSWORD"),
                catalog_name=settings.trino_catalog,
                http_scheme=settings.trino_http_scheme,
                ca_bundle=settings.trino_ca_bundle,
            ),
            "feature_store": ProductionFeatureStore(),
            "model_registry": ModelRegistryResource(
                tracking_uri=dg.EnvVar("MLOPS_MLFLOW_TRACKING_URI"),
                artifact_root=settings.mlflow_artifact_root or "s3://mlops-lake/mlflow",
                decisions_url=dg.EnvVar("MLOPS_DECISIONS_DB_URL"),
            ),
            "pipeline_runner": KfpClusterRunner(host=dg.EnvVar("MLOPS_KFP_HOST")),
            "deployer": InferenceServiceDeployer(
                namespace=settings.namespace,
                image=settings.image,
                deployment_mode=settings.kserve_deployment_mode,
            ),
        }
    if env is Environment.SERVICES:
        return _services_resources(settings)
    data = settings.data_dir
    lakehouse = SqlCatalogResource(folder=str(data / "iceberg"))
    return {
        "lakehouse": lakehouse,
        "warehouse": DuckDBWarehouse(path=str(settings.warehouse_path), lakehouse=lakehouse),
        "feature_store": EmbeddedFeatureStore(data_dir=str(data)),
        "model_registry": ModelRegistryResource(
            tracking_uri=settings.mlflow_tracking_uri
            or f"sqlite:///{data / 'mlflow' / 'mlflow.db'}",
            artifact_root=settings.mlflow_artifact_root or (data / "mlflow" / "artifacts").as_uri(),
            decisions_url=settings.decisions_db_url
            or f"sqlite:///{data / 'mlflow' / 'decisions.db'}",
        ),
        "pipeline_runner": LocalPipelineRunner(pipeline_root=str(data / "kfp")),
        "deployer": LocalDeployer(data_dir=str(data), port=settings.serving_port),
    }


def _services_resources(settings: Settings) -> dict[str, Any]:
    """Production's engines on this node (`mlops services up`): every S3 client of this process
    and its children (dbt, KFP steps, the model server) reads the node's endpoint and key."""
    settings.export_services_env()
    data = settings.data_dir
    node = settings.seaweed()
    lakehouse = RestCatalogResource(
        uri=node.iceberg_uri,
        warehouse=node.warehouse,
        credential=f"{node.access_key}:{node.secret_key}",
        s3_endpoint=node.s3_endpoint,
        s3_region=settings.s3_env()["AWS_REGION"],
    )
    return {
        "lakehouse": lakehouse,
        "warehouse": DuckDBWarehouse(path=str(settings.warehouse_path), lakehouse=lakehouse),
        "feature_store": ServicesFeatureStore(
            data_dir=str(data),
            registry_url=settings.services_database("feast", driver="postgresql+psycopg2"),
            redis_connection=settings.feast_redis_connection,
        ),
        "model_registry": ModelRegistryResource(
            tracking_uri=settings.mlflow_tracking_uri or settings.services_database("mlflow"),
            artifact_root=settings.mlflow_artifact_root or f"s3://{node.files_bucket}/mlflow",
            decisions_url=settings.decisions_db_url or settings.services_database("decisions"),
        ),
        "pipeline_runner": LocalPipelineRunner(pipeline_root=str(data / "kfp")),
        "deployer": LocalDeployer(data_dir=str(data), port=settings.serving_port),
    }


def executor_for(env: Environment) -> dg.ExecutorDefinition:
    """prod runs every step in its own Kubernetes Job. Locally the steps of a run share its
    process: a step process would re-import the stack (~3 s) for steps that take about as long."""
    if env is Environment.PROD:
        from dagster_k8s import k8s_job_executor  # only the prod location needs the k8s client

        return k8s_job_executor.configured({"max_concurrent": 8})
    return dg.in_process_executor


@contextlib.contextmanager
def open_resources(settings: Settings | None = None) -> Iterator[Any]:
    """The environment's resources, initialized (secrets resolved), for code outside a Dagster run:
    the CLI, the demo, the model server. `res.lakehouse.catalog()`, `res.deployer.apply(...)`."""
    settings = settings or get_settings()
    with dg.build_resources(resources_for(settings.env, settings)) as resources:
        yield resources
