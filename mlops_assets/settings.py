"""The one environment switch and the typed settings every domain reads.

`MLOPS_ENV` (local | ci | services | prod) decides the dbt target, the resource set and the Feast
and MLflow configs. `services` is production's code path on one node: S3 and an Iceberg REST catalog
from SeaweedFS (`mlops services up`), PostgreSQL and Redis of the machine. Everything else is a
`MLOPS_*` variable with a default that suits the embedded profile; production values (Trino host,
S3 prefixes, database URLs) come from the environment, never from code.
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from mlops_assets.services import Seaweed
    from mlops_assets.world import World

# The repository root: dbt_project/, feature_repo/ and data/ sit beside this package.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The Kubernetes secret every production pod and pipeline step reads (MLflow, S3, Trino, Redis).
SECRET_NAME = "mlops-secrets"
# The services profile's databases on the PostgreSQL server, each `<prefix>_<name>`.
SERVICES_DATABASES = ("dagster", "mlflow", "decisions", "feast")


class Environment(StrEnum):
    LOCAL = "local"
    CI = "ci"
    SERVICES = "services"
    PROD = "prod"


def get_environment() -> Environment:
    """The single place that decides which profile runs."""
    raw = os.environ.get("MLOPS_ENV", Environment.LOCAL.value).strip().lower()
    try:
        return Environment(raw)
    except ValueError:
        valid = ", ".join(e.value for e in Environment)
        raise ValueError(f"MLOPS_ENV={raw!r} is not one of: {valid}") from None


class ApiSettings(BaseModel):
    """The control API (`mlops api`, mlops_assets/api/): who may call it and how often."""

    model_config = ConfigDict(frozen=True)

    issuer: str
    audience: str
    algorithms: tuple[str, ...]  # accepted JWT algorithms; never `none`
    jwt_secret: SecretStr | None = None  # HS256 (embedded profile)
    jwks_url: str | None = None  # the issuer's public keys (production)
    rate_limit: int = Field(1200, ge=1)  # calls per tenant per window
    rate_window_seconds: float = Field(60, gt=0)
    redis_url: str | None = None  # the shared rate limit (production); None: in memory
    access_file: Path = PROJECT_ROOT / "deploy" / "api" / "access.yaml"
    dagster_url: str = "http://127.0.0.1:3000"  # the Dagster webserver runs are launched on
    max_body_bytes: int = Field(16 * 1024, ge=256)
    read_cache_seconds: float = Field(1.0, ge=0)  # reads may lag a change from elsewhere this long
    leeway_seconds: int = Field(5, ge=0, le=60)  # clock skew allowed on exp / iat / nbf


class Settings(BaseSettings):
    """Paths and knobs shared by the code location, the CLI and the benchmarks."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_", env_file=".env", extra="ignore")

    env: Environment = Environment.LOCAL
    data_dir: Path = PROJECT_ROOT / "data"
    # Where landing Parquet lives: a folder locally, an s3:// prefix in prod.
    landing_uri: str | None = None

    # prod warehouse (the same TRINO_* variables dbt's prod target reads)
    trino_host: str = Field(default="trino", validation_alias="TRINO_HOST")
    trino_port: int = Field(default=8080, validation_alias="TRINO_PORT")
    trino_user: str = Field(default="mlops", validation_alias="TRINO_USER")
    trino_catalog: str = Field(default="iceberg", validation_alias="TRINO_CATALOG")
    trino_http_scheme: str = Field(default="http", validation_alias="TRINO_HTTP_SCHEME")
    trino_ca_bundle: str | None = Field(default=None, validation_alias="TRINO_CA_BUNDLE")
    # DVC: the project whose dvc.yaml versions training sets (MLOPS_DVC_ROOT), and the prod remote.
    # Unset, it follows the data folder: the repository for ./data, else the data folder itself
    # (a DVC project generated there, mlops_assets/datasets/versioning.py), so tests, benchmarks
    # and second worlds never touch the tracked dvc.lock or datasets/.
    dvc_root: Path = PROJECT_ROOT
    dvc_s3_url: str | None = None
    # The DVC remote datasets are pushed to (default: `s3` in prod, the local folder elsewhere).
    dvc_remote: str | None = None
    # MLflow: SQLite + data/mlflow/artifacts unless set (prod: PostgreSQL URL or server, S3 root).
    mlflow_tracking_uri: str | None = None
    mlflow_artifact_root: str | None = None
    # The promotion decision log (SQLAlchemy URL); default: SQLite beside the MLflow database.
    decisions_db_url: str | None = None
    # Iceberg REST catalog (prod); the embedded profile uses pyiceberg's SQL catalog in data/iceberg.
    iceberg_rest_uri: str = "http://iceberg-rest:8181"
    iceberg_warehouse: str = "s3://mlops-lake/warehouse"
    # Kubeflow Pipelines endpoint (prod); the embedded profile runs pipelines with kfp.local.
    kfp_host: str | None = None
    # The port of the local model server every model shares (default: the model configs'
    # serving.port, 8085).
    serving_port: int | None = Field(default=None, ge=1024, le=65535)
    # prod: the project image (pipeline steps and the predictor run it) and the namespace.
    image: str = "ghcr.io/lakehouse-mlops/mlops:0.1.0"
    namespace: str = "mlops"
    # prod: KServe's deployment mode, written on every InferenceService (canaries need Serverless).
    kserve_deployment_mode: str = "Serverless"
    # prod: the S3 endpoint of the lake, when it is not AWS (the Iceberg REST catalog's files).
    s3_endpoint: str | None = None
    # The services profile on one node (`mlops services up`): SeaweedFS's S3 identity (it listens
    # on 127.0.0.1 only), and the machine's PostgreSQL and Redis.
    services_access_key: str = "mlops"
    services_secret_key: str = "mlops-services-secret"
    # Added to every SeaweedFS port (8333 S3, 8181 Iceberg REST, ...): a second node beside one.
    services_port_offset: int = Field(default=0, ge=0, le=30000)
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # The services profile's own databases on that server (<prefix>_dagster, _mlflow, _feast) and
    # Redis database (the demo empties it), so it never touches anything else there.
    services_db_prefix: str = Field(default="mlops", pattern=r"^[a-z][a-z0-9_]{0,30}$")
    services_redis_db: int = Field(default=5, ge=0, le=15)
    # The control API (`mlops api`): JWTs of this issuer and audience; HS256 with
    # MLOPS_API_JWT_SECRET on the embedded profile, the issuer's JWKS (MLOPS_API_JWKS_URL) in prod.
    api_issuer: str = "mlops-embedded"
    api_audience: str = "mlops-api"
    api_jwt_secret: SecretStr | None = None
    api_jwks_url: str | None = None
    api_rate_limit: int = Field(default=1200, ge=1)  # calls per tenant per window
    api_rate_window_seconds: float = Field(default=60, gt=0)
    api_access_file: Path = PROJECT_ROOT / "deploy" / "api" / "access.yaml"
    api_dagster_url: str = "http://127.0.0.1:3000"
    api_port: int = Field(default=8090, ge=1024, le=65535)
    api_read_cache_seconds: float = Field(default=2.0, ge=0)
    # Alerts (mlops_assets/monitoring/alerts.py): the Slack-compatible incoming webhook incidents
    # are posted to (unset: they are only logged), the Dagster UI their links open, and the
    # serving error-rate limit (share of requests rejected or failed over an interval of at least
    # alerts_min_requests requests, the sensor's check on the local server; Prometheus's rule in
    # deploy/monitoring/alert_rules.yml in production).
    alerts_webhook_url: SecretStr | None = None
    alerts_ui_url: str = "http://127.0.0.1:3000"
    alerts_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    alerts_error_rate_limit: float = Field(default=0.05, gt=0, le=1)
    alerts_min_requests: int = Field(default=20, ge=1)
    alerts_error_window_seconds: float = Field(default=300, gt=0)

    @model_validator(mode="after")
    def _dvc_root_follows_the_data_folder(self) -> Settings:
        # The services profile's gold tables are on S3: its own project depends on them there.
        if "dvc_root" not in self.model_fields_set and (
            self.data_dir.resolve() != (PROJECT_ROOT / "data").resolve() or self.on_services
        ):
            self.dvc_root = self.data_dir.resolve()
        return self

    @property
    def dvc_remote_name(self) -> str:
        s3 = self.env in (Environment.PROD, Environment.SERVICES)
        return self.dvc_remote or ("s3" if s3 else "local")

    @property
    def dvc_s3_remote_url(self) -> str | None:
        """The S3 remote's URL: MLOPS_DVC_S3_URL, on the services profile the node's bucket."""
        if self.dvc_s3_url or not self.on_services:
            return self.dvc_s3_url
        return f"s3://{self.seaweed().files_bucket}/dvc"

    @property
    def on_services(self) -> bool:
        """The services profile: production's engines, served on this node."""
        return self.env is Environment.SERVICES

    @property
    def landing(self) -> str:
        if self.landing_uri:
            return self.landing_uri
        if self.on_services:
            return f"s3://{self.seaweed().files_bucket}/landing"
        return str(self.data_dir / "landing")

    @property
    def gold_uri(self) -> str:
        """Where dbt-duckdb writes gold tables as Parquet (Feast's offline source reads them)."""
        if self.on_services:
            return f"s3://{self.seaweed().files_bucket}/gold"
        return str(self.gold_dir)

    def services_database(self, name: str, driver: str | None = None) -> str:
        """The URL of one of the services profile's PostgreSQL databases (`<prefix>_<name>`),
        with `driver` as the URL's scheme if given (SQLAlchemy's `postgresql+psycopg2`)."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.postgres_url)._replace(path=f"/{self.services_db_prefix}_{name}")
        return urlunsplit(parts._replace(scheme=driver) if driver else parts)

    @property
    def services_redis_url(self) -> str:
        """The services profile's Redis database (emptied by `mlops demo` on that profile)."""
        from urllib.parse import urlsplit, urlunsplit

        return urlunsplit(urlsplit(self.redis_url)._replace(path=f"/{self.services_redis_db}"))

    @property
    def feast_redis_connection(self) -> str:
        """That database as Feast's Redis connection string (`host:port,db=N,password=...`), with
        socket timeouts: a hung Redis costs a request 2 s (then a 503), not forever."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.redis_url)
        text = (
            f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379},db={self.services_redis_db},"
            "socket_timeout=2,socket_connect_timeout=1"
        )
        return text + (f",password={parts.password}" if parts.password else "")

    def export_services_env(self) -> None:
        """Hand the S3 endpoint and key to every client of this process and its children; and
        have Dagster write a step's events to PostgreSQL in batches (one insert for a range's
        720 landing partitions instead of 720 transactions: 35 s -> ~1 s)."""
        if self.on_services:
            os.environ.update(self.s3_env())
            os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "500")

    def s3_env(self) -> dict[str, str]:
        """The variables every S3 client of the services profile reads (pyarrow, boto3, MLflow,
        DVC, pyiceberg's FileIO, DuckDB through `lakehouse.duck`): the node's endpoint and key.
        Empty elsewhere: production pods get theirs from the cluster's secret."""
        if not self.on_services:
            return {}
        node = self.seaweed()
        return {
            "AWS_ACCESS_KEY_ID": node.access_key,
            "AWS_SECRET_ACCESS_KEY": node.secret_key,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": node.s3_endpoint,
            "MLFLOW_S3_ENDPOINT_URL": node.s3_endpoint,
        }

    def seaweed(self) -> Seaweed:
        """The SeaweedFS node of `mlops services`: data in <data dir>/services/seaweedfs."""
        from mlops_assets.services import Seaweed, SeaweedPorts

        return Seaweed(
            folder=self.data_dir / "services" / "seaweedfs",
            ports=SeaweedPorts().shifted(self.services_port_offset),
            access_key=self.services_access_key,
            secret_key=self.services_secret_key,
        )

    def api(self) -> ApiSettings:
        """The control API's settings: prod verifies tokens against the issuer's JWKS and shares
        its rate limit through Redis; the embedded profile uses HS256 and an in-memory limit."""
        prod = self.env is Environment.PROD
        return ApiSettings(
            issuer=self.api_issuer,
            audience=self.api_audience,
            algorithms=("RS256", "ES256") if prod else ("HS256",),
            jwt_secret=None if prod else self.api_jwt_secret,
            jwks_url=self.api_jwks_url if prod else None,
            rate_limit=self.api_rate_limit,
            rate_window_seconds=self.api_rate_window_seconds,
            redis_url=self.redis_url if prod else None,
            access_file=self.api_access_file,
            dagster_url=self.api_dagster_url,
            read_cache_seconds=self.api_read_cache_seconds,
        )

    @property
    def dagster_home(self) -> Path:
        """The local Dagster instance (SQLite storage; on the services profile PostgreSQL, and a
        home of its own) that `mlops demo` and `make dev` share."""
        return self.data_dir / ("dagster_home_services" if self.on_services else "dagster_home")

    @property
    def has_local_dagster_instance(self) -> bool:
        """Whether Dagster runs on the project's local instance (prod's comes from its deployment)."""
        return self.env is not Environment.PROD

    @property
    def warehouse_path(self) -> Path:
        """The embedded DuckDB warehouse (dbt's local/ci targets)."""
        return self.data_dir / "warehouse.duckdb"

    @property
    def datasets_dir(self) -> Path:
        """Training sets, DVC outputs of dvc.yaml (outside data/, so DVC can track them)."""
        return self.dvc_root / "datasets"

    @property
    def gold_dir(self) -> Path:
        """Where the embedded profile writes gold tables as Parquet."""
        return self.data_dir / "gold"

    @property
    def dbt_target(self) -> str:
        """dbt targets carry the environment names."""
        return self.env.value

    def world(self) -> World:
        """The simulated shop of this data folder (seed, scale, calendar, drift): persisted
        configuration, read fresh on every call so a long-running daemon sees a new world."""
        from mlops_assets.world import load_world

        return load_world(self.data_dir)

    def partition_days(self) -> tuple[str, str | None]:
        """First and last day of the daily partitions: from the world's first day; on the
        embedded profile to the simulated world's last (nothing shows as missing that can never
        exist), in production open-ended (to today)."""
        world = self.world()
        end = None if self.env is Environment.PROD else world.end_date.isoformat()
        return world.start_date.isoformat(), end

    def dbt_env(self) -> dict[str, str]:
        """The variables dbt's profiles.yml and sources read; dbt runs as a subprocess."""
        return {
            "MLOPS_ENV": self.env.value,
            "MLOPS_DATA_DIR": str(self.data_dir.resolve()),
            "MLOPS_LANDING_URI": self.landing,
            # Each target keeps its own manifest and partial-parse state.
            "DBT_TARGET_PATH": str(PROJECT_ROOT / "dbt_project" / "target" / self.dbt_target),
            "MLOPS_GOLD_URI": self.gold_uri,
            **self.s3_env(),
        }

    def export_dbt_env(self) -> None:
        """Hand the paths to dbt subprocesses. Parse and build must see the same values, or dbt
        throws away its partial-parse state and re-parses on every run."""
        os.environ.update(self.dbt_env())
        if self.env in (Environment.LOCAL, Environment.CI):
            self.gold_dir.mkdir(parents=True, exist_ok=True)


@cache
def get_settings() -> Settings:
    """This process's settings; on the services profile its S3 clients (and its children's) are
    pointed at the node here, once, whichever door the process came in by."""
    settings = Settings(env=get_environment())
    settings.export_services_env()
    return settings
