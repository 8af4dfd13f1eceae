"""Gates between landing and the warehouse: a bad delivery fails a named check and, because the
checks block, the dbt models downstream do not run in that run."""

from typing import TYPE_CHECKING

import dagster as dg

from mlops_assets.defs.keys import LANDING
from mlops_assets.defs.landing.resources import LandingZoneResource
from mlops_assets.defs.partitions import partition_days

if TYPE_CHECKING:
    from mlops_assets.datagen.landing import LandingValidation

SCHEMA_CHECK = "landing_schema_matches_contract"
KEYS_NOT_NULL_CHECK = "landing_keys_not_null"
KEYS_UNIQUE_CHECK = "landing_keys_unique"


def _verdicts(v: "LandingValidation") -> dict[str, tuple[bool, str]]:
    return {
        SCHEMA_CHECK: (
            v.schema_ok,
            "all files match the contract"
            if v.schema_ok
            else f"{len(v.schema_errors)} schema problem(s), {len(v.missing_days)} missing day(s): "
            + "; ".join((v.schema_errors + [f"no file for {d}" for d in v.missing_days])[:3]),
        ),
        KEYS_NOT_NULL_CHECK: (
            v.null_key_rows == 0,
            f"{v.null_key_rows} of {v.rows} rows have a null key",
        ),
        KEYS_UNIQUE_CHECK: (
            v.duplicate_key_rows == 0,
            f"{v.duplicate_key_rows} of {v.rows} rows repeat a key already in their file",
        ),
    }


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(name, asset=key, blocking=True, description=desc)
        for key in LANDING.values()
        for name, desc in (
            (SCHEMA_CHECK, "Every file has the contract's columns and types."),
            (KEYS_NOT_NULL_CHECK, "No row has a null primary key."),
            (KEYS_UNIQUE_CHECK, "No primary key repeats within a day's delivery."),
        )
    ],
    can_subset=True,
)
def landing_quality_checks(
    context: dg.AssetCheckExecutionContext, landing_zone: LandingZoneResource
):
    days = partition_days(context, "landing checks are")
    selected = context.selected_asset_check_keys
    for table, key in LANDING.items():
        wanted = [k for k in selected if k.asset_key == key]
        if not wanted:
            continue
        validation = landing_zone.validate(table, days)
        verdicts = _verdicts(validation)
        for check_key in wanted:
            passed, message = verdicts[check_key.name]
            if not passed:
                context.log.error(f"{table}: {check_key.name} failed: {message}")
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name=check_key.name,
                passed=passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description=message,
                metadata=validation.metadata(),
            )
