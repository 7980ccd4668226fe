"""The Spark-free core: model, features, trainer, artifacts, text encoder,
recommendation policy, scorer and metrics (numpy, pandas, torch only).

Everything here can be imported and timed on a GPU box without Spark; a test
imports this package with pyspark made unimportable."""
