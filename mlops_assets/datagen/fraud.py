"""Fraud on the shop's orders: which orders are fraudulent, how they are paid, when they bounce.

Pure functions of arrays and a random generator (`simulate` wires them to a day's orders). The
orders themselves are never touched: fraud is a decision about an existing order, so the churn
tables stay the same bytes. Fraud is likelier for new accounts, unusually large orders and orders
in a burst; a fraudulent order is paid and shipped differently (risky payment methods, the web,
a ship country other than the account's), and gets a chargeback 7 to 60 days later (or never).

Fraud drift (`World.fraud_drift_from`): from that day fraudsters pay with a wallet on phones and
ship to the account's own country, a pattern that looked safe before.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

PAYMENT_METHODS = np.array(
    ["card", "paypal", "apple_pay", "bank_transfer", "gift_card", "prepaid_card"]
)
DEVICES = np.array(["web", "ios", "android"])
CHARGEBACK_REASONS = np.array(
    ["unauthorized", "card_not_present", "stolen_card", "account_takeover"]
)
# Rows: legitimate, fraud before the fraud drift, fraud after it.
PAYMENT_P = np.array(
    [
        [0.50, 0.22, 0.15, 0.07, 0.04, 0.02],
        [0.16, 0.03, 0.02, 0.01, 0.39, 0.39],
        [0.15, 0.05, 0.70, 0.02, 0.04, 0.04],
    ]
)
DEVICE_P = np.array([[0.45, 0.30, 0.25], [0.75, 0.05, 0.20], [0.05, 0.85, 0.10]])
SHIP_ABROAD_P = np.array([0.03, 0.70, 0.05])
REPORTED_P = 0.95  # the rest of the fraud is never charged back
LAG_MIN_DAYS, LAG_MAX_DAYS, LAG_MEAN_EXTRA_DAYS = 7, 60, 14
FRAUD_BASE_LOGIT = -6.4

DAY_US = 86_400_000_000

PAYMENTS_SCHEMA = pa.schema(
    [
        pa.field("order_id", pa.int64(), nullable=False),
        pa.field("customer_id", pa.int64(), nullable=False),
        pa.field("paid_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("payment_method", pa.string()),
        pa.field("ship_country", pa.string()),
        pa.field("device", pa.string()),
    ]
)
CHARGEBACKS_SCHEMA = pa.schema(
    [
        pa.field("chargeback_id", pa.int64(), nullable=False),
        pa.field("order_id", pa.int64(), nullable=False),
        pa.field("customer_id", pa.int64(), nullable=False),
        pa.field("reported_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("amount", pa.float64()),
    ]
)


def labels(names: np.ndarray, idx: np.ndarray) -> pa.Array:
    """Category names by index, built in Arrow (numpy's fixed-width strings convert slowly)."""
    return pa.array(names.tolist(), pa.string()).take(pa.array(idx))


def orders_prev_24h(
    cust: np.ndarray, at_us: np.ndarray, prev_cust: np.ndarray, prev_at_us: np.ndarray
) -> np.ndarray:
    """For each order (cust, at_us), the customer's orders strictly before it and at most 24 hours
    earlier, among this day's orders and the previous day's."""
    all_cust = np.concatenate([prev_cust, cust]).astype(np.int64)
    all_at = np.concatenate([prev_at_us, at_us]).astype(np.int64)
    if not len(all_at):
        return np.zeros(0, dtype=np.int64)
    # One sortable key per order: customer in the high digits, time (within two days) below.
    base = int(all_at.min())
    keys = np.sort(all_cust * 10**12 + (all_at - base))
    here = cust.astype(np.int64) * 10**12 + (at_us.astype(np.int64) - base)
    lo = np.searchsorted(keys, here - DAY_US, side="left")
    hi = np.searchsorted(keys, here, side="left")
    return (hi - lo).astype(np.int64)


def fraud_logit(age_days: np.ndarray, amount_z: np.ndarray, prev_24h: np.ndarray) -> np.ndarray:
    """The log-odds of fraud from what the order reveals (account age, how unusual its amount is
    for the customer in standard deviations, the burst it belongs to)."""
    return (
        FRAUD_BASE_LOGIT
        + 2.8 * (age_days < 2)
        + 1.6 * (age_days < 14)
        + 0.8 * (age_days < 60)
        + 1.4 * np.clip(amount_z - 0.5, 0, 3)
        + 1.8 * np.minimum(prev_24h, 2)
    )


def _pick(u: np.ndarray, probs: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw: for each u, the category of `probs[row]` it falls into."""
    cdf = np.cumsum(probs, axis=1)[row]
    return np.minimum((u[:, None] >= cdf).sum(axis=1), probs.shape[1] - 1)


def decide(
    rng: np.random.Generator,
    logit: np.ndarray,
    home_country: np.ndarray,
    n_countries: int,
    drifted: bool,
) -> dict[str, np.ndarray]:
    """One day's fraud decisions and payment attributes. The draws are the same with and without
    the drift (only the probabilities differ), so a day before the drift is the same either way."""
    n = len(logit)
    is_fraud = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    row = np.where(is_fraud, 2 if drifted else 1, 0)
    method = _pick(rng.random(n), PAYMENT_P, row)
    device = _pick(rng.random(n), DEVICE_P, row)
    abroad = rng.random(n) < SHIP_ABROAD_P[row]
    ship_country = np.where(
        abroad, (home_country + rng.integers(1, n_countries, n)) % n_countries, home_country
    )
    reported = is_fraud & (rng.random(n) < REPORTED_P)
    # Whole seconds after the order: at least 7 days, under 60, most in the first weeks.
    extra_s = np.minimum(
        rng.exponential(LAG_MEAN_EXTRA_DAYS * 86_400, n), (LAG_MAX_DAYS - LAG_MIN_DAYS) * 86_400 - 1
    )
    return {
        "is_fraud": is_fraud,
        "payment_method": method,  # indices into PAYMENT_METHODS
        "device": device,  # indices into DEVICES
        "ship_country_idx": ship_country,
        "paid_after_us": rng.integers(1, 180, n) * 1_000_000,
        "reported": reported,
        "report_lag_us": (LAG_MIN_DAYS * 86_400 + extra_s.astype(np.int64)) * 1_000_000,
        "reason": CHARGEBACK_REASONS[rng.integers(0, len(CHARGEBACK_REASONS), n)],
    }


def reports(drawn: dict[str, np.ndarray], decided: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The chargebacks a day's orders will get, sorted by report time (then order id)."""
    at = drawn["ordered_us"] + decided["report_lag_us"]
    sel = np.flatnonzero(decided["reported"])
    sel = sel[np.lexsort((drawn["order_id"][sel], at[sel]))]
    return {
        "reported_at": at[sel],
        "reason": decided["reason"][sel],
        **{k: drawn[k][sel] for k in ("order_id", "cust", "amount")},
    }


def reported_between(
    days: list[dict[str, np.ndarray]], start_us: int, end_us: int
) -> dict[str, np.ndarray]:
    """The chargebacks (`reports` of several days) reported in [start_us, end_us), sorted by
    report time then order id."""
    parts = []
    for found in days:
        lo, hi = np.searchsorted(found["reported_at"], [start_us, end_us], side="left")
        parts.append({k: v[lo:hi] for k, v in found.items()})
    if not parts:
        return {k: np.zeros(0, dtype=np.int64) for k in ("reported_at", "order_id", "cust")} | {
            "reason": np.zeros(0, dtype=str),
            "amount": np.zeros(0),
        }
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.lexsort((cols["order_id"], cols["reported_at"]))
    return {k: v[order] for k, v in cols.items()}
