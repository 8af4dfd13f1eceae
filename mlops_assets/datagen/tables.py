"""Names of the landing tables (kept free of heavy imports: the code location reads it at load)."""

LANDING_TABLES = ("customers", "orders", "support_tickets", "payments", "chargebacks")
