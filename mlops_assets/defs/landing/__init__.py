"""The landing zone: raw daily deliveries from the shop, with blocking checks before the warehouse."""
