"""The nightly evaluation: ``nightly`` (ours vs the baselines on the same users, by task),
``bootstrap`` (intervals and paired verdicts as Spark aggregates), ``lists`` (metrics of the
recommended lists), ``gate`` (which lifecycle strategies lost), ``report`` (metric rows,
the quality table and plots). Writes nothing: the ``evaluate`` stage does."""
