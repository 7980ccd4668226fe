"""DataFrame -> DataFrame: sources and the synthetic generators, validation (the ingest
rules), sequences, lifecycle stages and labels, user splits, shared column expressions.
Imports neither ``ml`` nor ``io``: no torch, no table writes."""
