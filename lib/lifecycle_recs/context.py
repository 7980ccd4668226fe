"""The run context every stage receives: the session, the frozen config and the
dates of this run, resolved once by the pipeline and never changed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from pyspark.sql import SparkSession

from lifecycle_recs.config import Config
from lifecycle_recs.dates import training_date


@dataclass(frozen=True)
class RunContext:
    """``snapshot_date`` D is None only while ``ingest`` runs without ``--date``
    (D is then the last event date after ingest). ``snapshot_dates``: the
    snapshots the data stages build: D, plus T = D - H when a stage that needs
    the training snapshot (train, evaluate) is among the stages of this run."""

    spark: SparkSession
    cfg: Config
    snapshot_date: Optional[str] = None
    snapshot_dates: Tuple[str, ...] = ()

    @property
    def training_date(self) -> str:
        """Training snapshot T = D - H: its labels (T, D] are known on the night of D."""
        return training_date(self.require_date(), self.cfg.lifecycle.horizon_days)

    def require_date(self) -> str:
        if self.snapshot_date is None:
            raise RuntimeError("this stage needs the snapshot date D, which is not resolved yet")
        return self.snapshot_date


@dataclass(frozen=True)
class StageResult:
    stage: str
    seconds: float
    info: Dict[str, object] = field(default_factory=dict)
