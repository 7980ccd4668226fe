"""One module per nightly stage, each with ``run(ctx) -> dict`` (counts for the
log). Only these modules write tables, each only its own outputs; nothing
imports them but the registry in ``pipeline.py``."""
