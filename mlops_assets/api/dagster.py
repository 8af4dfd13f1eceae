"""Runs on the Dagster webserver through its GraphQL API: a job launched with
dagster_graphql's `DagsterGraphQLClient`, a partition backfill with the `launchPartitionBackfill`
mutation, and either one read back with its status and tags. An unreachable webserver is a 503
with its address, not a traceback."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from mlops_assets.api.errors import ApiError, not_found

BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""
RUN = """
query Run($id: ID!) {
  runOrError(runId: $id) {
    __typename
    ... on Run { runId jobName status startTime endTime tags { key value } }
    ... on Error { message }
  }
}
"""
BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status numPartitions timestamp tags { key value } }
    ... on Error { message }
  }
}
"""


class DagsterRuns:
    def __init__(self, url: str, timeout: int = 10) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout

    def _unreachable(self, err: Exception) -> ApiError:
        return ApiError(
            503,
            "orchestrator_unreachable",
            f"the Dagster webserver at {self.url} is unreachable ({type(err).__name__}); "
            "start it (`make dev`) or set MLOPS_API_DAGSTER_URL",
        )

    def _graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        import requests

        try:
            response = requests.post(
                f"{self.url}/graphql",
                json={"query": query, "variables": variables},
                timeout=self._timeout,
            )
            response.raise_for_status()
            answer = response.json()
        except (requests.RequestException, ValueError) as err:
            raise self._unreachable(err) from None
        if answer.get("errors"):
            message = answer["errors"][0].get("message", "unknown error")
            raise ApiError(502, "orchestrator_error", f"Dagster answered: {message}")
        return answer["data"]

    def launch_job(self, job: str, tags: dict[str, str], run_config: dict | None = None) -> str:
        from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

        parts = urlsplit(self.url)
        client = DagsterGraphQLClient(
            parts.hostname or "127.0.0.1",
            port_number=parts.port,
            use_https=parts.scheme == "https",
            timeout=self._timeout,
            path_prefix=parts.path.rstrip("/"),
        )
        try:
            return client.submit_job_execution(job, run_config=run_config or {}, tags=tags)
        except DagsterGraphQLClientError as err:
            if "Error when connecting" in str(err) or "Exception occured" in str(err):
                raise self._unreachable(err) from None
            raise ApiError(409, "launch_refused", f"Dagster refused the run: {err}") from None

    def launch_backfill(self, assets: list[list[str]], days: list[str], tags: dict) -> str:
        params = {
            "assetSelection": [{"path": path} for path in assets],
            "partitionNames": days,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
            "title": tags.get("mlops/reason", "backfill"),
        }
        result = self._graphql(BACKFILL, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            message = result.get("message", result["__typename"])
            raise ApiError(409, "launch_refused", f"Dagster refused the backfill: {message}")
        return result["backfillId"]

    def read(self, run_id: str) -> dict[str, Any]:
        """A run, else a backfill, by id: its kind, status and tags."""
        run = self._graphql(RUN, {"id": run_id})["runOrError"]
        if run["__typename"] == "Run":
            return {"kind": "run", **run, "tags": {t["key"]: t["value"] for t in run["tags"]}}
        backfill = self._graphql(BACKFILL_STATUS, {"id": run_id})["partitionBackfillOrError"]
        if backfill["__typename"] == "PartitionBackfill":
            tags = {t["key"]: t["value"] for t in backfill["tags"]}
            return {"kind": "backfill", **backfill, "runId": backfill["id"], "tags": tags}
        raise not_found(f"run {run_id!r}")
