"""Seeded generators: ``shop`` (the demo's e-commerce event log, generated inside Spark
tasks at any scale) and ``orders`` (an order-level log without items, in pandas)."""
