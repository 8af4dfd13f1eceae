"""A synthetic e-commerce source with a real churn signal and switchable drift.

The world is a population of customers with latent traits (engagement, friction, discount appetite).
Traits drive what can be observed (order frequency, spend, discounts, support tickets) and the churn
hazard; a churned customer stops ordering. Every day's landing files are a pure function of
(world, day), so any partition can be regenerated on its own and gives the same bytes.

Drift switches (dates in the `World`; the default world turns both on at day 165):
- covariate drift: from a day on, a new acquisition channel (``tiktok``) brings younger,
  lower-engagement, discount-hungry customers from other countries;
- concept drift: from a day on, the hazard changes: support friction stops mattering and discount
  appetite matters much more (a pricing change), so a model trained before it ranks badly after.

Fraud (`fraud`) decides which of the day's orders are fraudulent and how each order is paid, on
random streams of its own: `payments` and `chargebacks` are extra tables, and the churn tables are
the same bytes with or without them (and with or without the fraud drift).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import pyarrow as pa

from mlops_assets.datagen import fraud
from mlops_assets.datagen.fraud import CHARGEBACKS_SCHEMA, PAYMENTS_SCHEMA
from mlops_assets.world import World

COUNTRIES = np.array(["US", "GB", "DE", "FR", "VN", "BR", "IN", "JP"])
COUNTRY_P = np.array([0.30, 0.12, 0.12, 0.10, 0.12, 0.10, 0.08, 0.06])
COUNTRY_P_TIKTOK = np.array([0.12, 0.05, 0.05, 0.05, 0.28, 0.22, 0.18, 0.05])
CHANNELS = np.array(["organic", "paid_search", "social", "referral", "email", "tiktok"])
CHANNEL_P = np.array([0.35, 0.25, 0.18, 0.12, 0.10, 0.0])
CHANNEL_ENGAGEMENT = np.array([0.1, -0.1, -0.3, 0.4, 0.2, -0.6])
PLANS = np.array(["free", "basic", "premium"])
PLAN_P = np.array([0.5, 0.35, 0.15])
PLAN_ENGAGEMENT = np.array([-0.4, 0.1, 0.5])
TICKET_CATEGORIES = np.array(["delivery", "billing", "product", "account"])
TICKET_PRIORITIES = np.array(["low", "normal", "high"])
ORDER_STATUSES = np.array(["completed", "returned", "cancelled"])
DISCOUNT_LEVELS = np.array([10.0, 15.0, 20.0, 30.0])

BACKLOG_DAYS = 365  # customers who signed up before the first landing day
TIKTOK_SHARE = 0.4  # share of new signups from the new channel once covariate drift is on

# Stream ids keep the per-day random generators independent of each other.
_STREAM_ORDERS, _STREAM_TICKETS, _STREAM_FRAUD = 1, 2, 3
AMOUNT_SIGMA = 0.45  # spread of an order's log amount around the customer's usual one

CUSTOMERS_SCHEMA = pa.schema(
    [
        pa.field("customer_id", pa.int64(), nullable=False),
        pa.field("signup_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("country", pa.string()),
        pa.field("acquisition_channel", pa.string()),
        pa.field("plan", pa.string()),
        pa.field("birth_year", pa.int32()),
        pa.field("email_opt_in", pa.bool_()),
    ]
)
ORDERS_SCHEMA = pa.schema(
    [
        pa.field("order_id", pa.int64(), nullable=False),
        pa.field("customer_id", pa.int64(), nullable=False),
        pa.field("ordered_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("amount", pa.float64()),
        pa.field("items", pa.int32()),
        pa.field("discount_pct", pa.float64()),
        pa.field("status", pa.string()),
    ]
)
TICKETS_SCHEMA = pa.schema(
    [
        pa.field("ticket_id", pa.int64(), nullable=False),
        pa.field("customer_id", pa.int64(), nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("updated_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("category", pa.string()),
        pa.field("priority", pa.string()),
        pa.field("status", pa.string()),
    ]
)
SCHEMAS: dict[str, pa.Schema] = {
    "customers": CUSTOMERS_SCHEMA,
    "orders": ORDERS_SCHEMA,
    "support_tickets": TICKETS_SCHEMA,
    "payments": PAYMENTS_SCHEMA,
    "chargebacks": CHARGEBACKS_SCHEMA,
}
# The key columns that must be present and unique within one landing file (a ticket lands once
# open and once resolved).
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id",),
    "orders": ("order_id",),
    "support_tickets": ("ticket_id", "status"),
    "payments": ("order_id",),
    "chargebacks": ("chargeback_id",),
}


@dataclass(frozen=True)
class Population:
    """Customer-level arrays (index = customer_id - 1)."""

    signup_day: np.ndarray  # int, days since start_date (negative = backlog)
    signup_second: np.ndarray  # int, second of the signup day
    churn_day: np.ndarray  # float, day the customer stops ordering (inf = never in practice)
    country: np.ndarray
    country_idx: np.ndarray  # index into COUNTRIES
    channel: np.ndarray
    plan: np.ndarray
    birth_year: np.ndarray
    email_opt_in: np.ndarray
    order_rate: np.ndarray  # orders per day while active
    log_aov: np.ndarray
    discount_p: np.ndarray
    ticket_rate: np.ndarray

    def active_on(self, day: int) -> np.ndarray:
        return np.flatnonzero((self.signup_day <= day) & (self.churn_day > day))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def build_population(cfg: World) -> Population:
    rng = np.random.default_rng([cfg.seed, 0])
    n = cfg.n_customers
    n_backlog = int(n * 0.4)
    signup_day = np.concatenate(
        [
            rng.integers(-BACKLOG_DAYS, 0, n_backlog),
            rng.integers(0, cfg.horizon_days, n - n_backlog),
        ]
    )
    signup_day.sort()  # customer ids grow with signup time, as in a real sequence
    cov_day = cfg.drift_index(cfg.covariate_drift_from)
    drifted = (signup_day >= cov_day) & (rng.random(n) < TIKTOK_SHARE)

    channel_idx = rng.choice(len(CHANNELS), n, p=CHANNEL_P)
    channel_idx[drifted] = 5
    country_idx = rng.choice(len(COUNTRIES), n, p=COUNTRY_P)
    country_idx[drifted] = rng.choice(len(COUNTRIES), int(drifted.sum()), p=COUNTRY_P_TIKTOK)
    plan_idx = rng.choice(len(PLANS), n, p=PLAN_P)
    birth_year = rng.normal(1988, 11, n).clip(1940, 2007).astype(np.int32)
    birth_year[drifted] = rng.normal(2001, 4, int(drifted.sum())).clip(1960, 2008).astype(np.int32)

    engagement = rng.normal(0, 1, n) + CHANNEL_ENGAGEMENT[channel_idx] + PLAN_ENGAGEMENT[plan_idx]
    friction = rng.normal(0, 1, n)
    discount_p = _sigmoid(-1.2 + 1.3 * rng.normal(0, 1, n) + 1.2 * drifted)

    order_rate = np.exp(-2.3 + 0.55 * engagement)
    log_aov = 3.6 + 0.25 * engagement + 0.35 * (plan_idx == 2) - 0.3 * drifted
    ticket_rate = np.exp(-4.2 - 0.3 * engagement + 0.8 * friction)

    premium = (plan_idx == 2).astype(float)
    hazard_pre = np.exp(-5.0 - 0.7 * engagement + 0.8 * friction + 1.2 * discount_p - 0.4 * premium)
    hazard_post = np.exp(
        -4.9 - 0.7 * engagement + 0.05 * friction + 3.5 * discount_p - 0.4 * premium
    )

    lifetime = _lifetimes(cfg, rng, signup_day, hazard_pre, hazard_post)
    return Population(
        signup_day=signup_day,
        signup_second=rng.integers(0, 86_400, n),
        churn_day=signup_day + lifetime,
        country=COUNTRIES[country_idx],
        country_idx=country_idx,
        channel=CHANNELS[channel_idx],
        plan=PLANS[plan_idx],
        birth_year=birth_year,
        email_opt_in=rng.random(n) < 0.6,
        order_rate=order_rate,
        log_aov=log_aov,
        discount_p=discount_p,
        ticket_rate=ticket_rate,
    )


def _lifetimes(
    cfg: World,
    rng: np.random.Generator,
    signup_day: np.ndarray,
    hazard_pre: np.ndarray,
    hazard_post: np.ndarray,
) -> np.ndarray:
    """Days from signup to churn under a hazard that switches at the concept drift: solve
    H(t) = E for the churn time, E ~ Exp(1), with H piecewise linear."""
    exposure = rng.exponential(1.0, len(signup_day))
    con_day = cfg.drift_index(cfg.concept_drift_from)
    pre_span = np.clip(con_day - signup_day, 0, None)
    churn_in_pre = exposure < hazard_pre * pre_span
    with np.errstate(invalid="ignore"):  # the unused branch is inf - inf without concept drift
        return np.where(
            churn_in_pre,
            exposure / hazard_pre,
            pre_span + (exposure - hazard_pre * pre_span) / hazard_post,
        )


@lru_cache(maxsize=4)
def population_for(cfg: World) -> Population:
    return build_population(cfg)


def _day_start_us(cfg: World, day: int) -> int:
    start = dt.datetime.combine(cfg.start_date, dt.time(), tzinfo=dt.UTC)
    return int(start.timestamp() * 1_000_000) + day * 86_400_000_000


def _ids(day: int, counter: np.ndarray) -> np.ndarray:
    # Globally unique, stable ids: day in the high digits, sequence in the low ones.
    return (day + BACKLOG_DAYS + 1) * 10_000_000 + counter


@lru_cache(maxsize=128)
def orders_on(cfg: World, day: int) -> dict[str, np.ndarray]:
    """The orders placed on `day` (a day index) as arrays; shared, do not modify them."""
    pop = population_for(cfg)
    if day < 0:
        return {k: np.zeros(0, dtype=np.int64) for k in ("order_id", "cust", "ordered_us")}
    rng = np.random.default_rng([cfg.seed, _STREAM_ORDERS, day + BACKLOG_DAYS])
    active = pop.active_on(day)
    counts = rng.poisson(pop.order_rate[active])
    cust = np.repeat(active, counts)
    n = len(cust)
    discounted = rng.random(n) < pop.discount_p[cust]
    discount = np.where(discounted, DISCOUNT_LEVELS[rng.integers(0, 4, n)], 0.0)
    noise = rng.normal(0.0, AMOUNT_SIGMA, n)
    amount = np.round(np.exp(pop.log_aov[cust] + noise) * (1 - discount / 100), 2)
    seconds = np.sort(rng.integers(0, 86_400, n))
    return {
        "order_id": _ids(day, np.arange(n)),
        "cust": cust,
        "ordered_us": _day_start_us(cfg, day) + seconds * 1_000_000,
        "amount": amount,
        "amount_z": noise / AMOUNT_SIGMA,
        "items": (1 + rng.poisson(1.4, n)).astype(np.int32),
        "discount_pct": discount,
        "status": ORDER_STATUSES[rng.choice(3, n, p=[0.92, 0.05, 0.03])],
    }


@lru_cache(maxsize=128)
def fraud_on(cfg: World, day: int) -> dict[str, np.ndarray]:
    """Which of `day`'s orders are fraud, and their payment and chargeback draws (a chargeback
    lands up to 60 days later: cached, so landing day after day draws each day once)."""
    pop, drawn, before = population_for(cfg), orders_on(cfg, day), orders_on(cfg, day - 1)
    cust, at = drawn["cust"], drawn["ordered_us"]
    signup_us = _day_start_us(cfg, 0) + pop.signup_day[cust] * fraud.DAY_US
    age_days = (at - signup_us - pop.signup_second[cust] * 1_000_000) / fraud.DAY_US
    prev_24h = fraud.orders_prev_24h(cust, at, before["cust"], before["ordered_us"])
    logit = fraud.fraud_logit(age_days, drawn["amount_z"], prev_24h)
    rng = np.random.default_rng([cfg.seed, _STREAM_FRAUD, day + BACKLOG_DAYS])
    drifted = day >= cfg.drift_index(cfg.fraud_drift_from)
    decided = fraud.decide(rng, logit, pop.country_idx[cust], len(COUNTRIES), drifted)
    return {**decided, "reports": fraud.reports(drawn, decided)}


@lru_cache(maxsize=16)
def tickets_opened_on(cfg: World, day: int) -> dict[str, np.ndarray]:
    """Tickets opened on `day`, with how many days later each is resolved (cached: a day's
    resolutions reach back 5 days); shared, do not modify them."""
    pop = population_for(cfg)
    rng = np.random.default_rng([cfg.seed, _STREAM_TICKETS, day + BACKLOG_DAYS])
    # Customers keep complaining for a week after they leave.
    cand = np.flatnonzero((pop.signup_day <= day) & (pop.churn_day > day - 7))
    counts = rng.poisson(pop.ticket_rate[cand])
    cust = np.repeat(cand, counts)
    n = len(cust)
    seconds = np.sort(rng.integers(0, 86_400, n))
    return {
        "ticket_id": _ids(day, np.arange(n)),
        "customer_id": cust.astype(np.int64) + 1,
        "created_us": _day_start_us(cfg, day) + seconds * 1_000_000,
        "category": TICKET_CATEGORIES[rng.choice(4, n, p=[0.4, 0.25, 0.25, 0.1])],
        "priority": TICKET_PRIORITIES[rng.choice(3, n, p=[0.3, 0.55, 0.15])],
        "resolve_lag": rng.choice(6, n, p=[0.3, 0.3, 0.15, 0.1, 0.1, 0.05]),
        "resolve_seconds": rng.integers(0, 86_400, n),
    }


class DayGenerator:
    """Builds one landing day's tables."""

    def __init__(self, cfg: World, day: dt.date):
        self.cfg = cfg
        self.day = cfg.day_index(day)
        if self.day < 0:
            raise ValueError(f"{day} is before the source's first day {cfg.start_date}")
        self.pop = population_for(cfg)

    @cached_property
    def day_start_us(self) -> int:
        return _day_start_us(self.cfg, self.day)

    def customers(self) -> pa.Table:
        pop = self.pop
        # The first landing day carries the backlog of customers who signed up earlier.
        lo = -np.inf if self.day == 0 else self.day
        idx = np.flatnonzero((pop.signup_day >= lo) & (pop.signup_day <= self.day))
        signup_us = (
            _day_start_us(self.cfg, 0)
            + pop.signup_day[idx] * 86_400_000_000
            + pop.signup_second[idx] * 1_000_000
        )
        return pa.table(
            {
                "customer_id": idx.astype(np.int64) + 1,
                "signup_at": signup_us,
                "country": pop.country[idx],
                "acquisition_channel": pop.channel[idx],
                "plan": pop.plan[idx],
                "birth_year": pop.birth_year[idx],
                "email_opt_in": pop.email_opt_in[idx],
            },
        ).cast(CUSTOMERS_SCHEMA)

    def orders(self) -> pa.Table:
        drawn = orders_on(self.cfg, self.day)
        return pa.table(
            {
                "order_id": drawn["order_id"],
                "customer_id": drawn["cust"].astype(np.int64) + 1,
                "ordered_at": drawn["ordered_us"],
                **{k: drawn[k] for k in ("amount", "items", "discount_pct", "status")},
            }
        ).cast(ORDERS_SCHEMA)

    def payments(self) -> pa.Table:
        """How each of the day's orders was paid, where it ships, from which device."""
        drawn, decided = orders_on(self.cfg, self.day), fraud_on(self.cfg, self.day)
        return pa.table(
            {
                "order_id": drawn["order_id"],
                "customer_id": drawn["cust"].astype(np.int64) + 1,
                "paid_at": drawn["ordered_us"] + decided["paid_after_us"],
                "payment_method": fraud.labels(fraud.PAYMENT_METHODS, decided["payment_method"]),
                "ship_country": fraud.labels(COUNTRIES, decided["ship_country_idx"]),
                "device": fraud.labels(fraud.DEVICES, decided["device"]),
            }
        ).cast(PAYMENTS_SCHEMA)

    def chargebacks(self) -> pa.Table:
        """Chargebacks reported today, for fraudulent orders of 7 to 60 days ago."""
        earlier = range(max(self.day - fraud.LAG_MAX_DAYS, 0), self.day - fraud.LAG_MIN_DAYS + 1)
        found = fraud.reported_between(
            [fraud_on(self.cfg, d)["reports"] for d in earlier],
            self.day_start_us,
            self.day_start_us + fraud.DAY_US,
        )
        found["chargeback_id"] = _ids(self.day, np.arange(len(found["order_id"])))
        found["customer_id"] = found.pop("cust").astype(np.int64) + 1
        return pa.table(found).select(CHARGEBACKS_SCHEMA.names).cast(CHARGEBACKS_SCHEMA)

    def support_tickets(self) -> pa.Table:
        """Opened tickets (status open) plus the update rows of tickets resolved today.

        A ticket therefore lands twice (open, then resolved): silver keeps its latest state.
        """
        parts = []
        opened = tickets_opened_on(self.cfg, self.day)
        parts.append(
            {
                **{k: opened[k] for k in ("ticket_id", "customer_id", "category", "priority")},
                "created_at": opened["created_us"],
                "updated_at": opened["created_us"],
                "status": np.full(len(opened["ticket_id"]), "open"),
            }
        )
        for lag in range(6):
            if self.day - lag < 0:
                break
            src = opened if lag == 0 else tickets_opened_on(self.cfg, self.day - lag)
            sel = src["resolve_lag"] == lag
            resolved_us = self.day_start_us + src["resolve_seconds"][sel] * 1_000_000
            parts.append(
                {
                    **{
                        k: src[k][sel] for k in ("ticket_id", "customer_id", "category", "priority")
                    },
                    "created_at": src["created_us"][sel],
                    # Same-day resolution can't precede the opening.
                    "updated_at": np.maximum(resolved_us, src["created_us"][sel] + 1_000_000),
                    "status": np.full(int(sel.sum()), "resolved"),
                }
            )
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return pa.table(cols).select(TICKETS_SCHEMA.names).cast(TICKETS_SCHEMA)

    def table(self, name: str) -> pa.Table:
        if name not in SCHEMAS:
            raise KeyError(f"unknown landing table {name!r}; expected one of {sorted(SCHEMAS)}")
        return getattr(self, name)()
