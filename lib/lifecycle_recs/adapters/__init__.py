"""Where Spark meets the Spark-free ``ml`` core: the UDFs that score and embed, the
training feed, BG/NBD summaries, lapsed users' counts, the training-inputs fingerprint and
the scoring input. A Spark twin keeps its ``ml/`` module's name (``btyd``, ``lapsed``)."""
