"""The nightly pipeline for one snapshot date D: the registry of stages and the
runner. Stages run in the order given; each is an atomic, idempotent write, and
each result carries counts and timings.

D is resolved once: the ``--date`` given, or else the last event date once
``ingest`` (when it runs) has landed the events. The run context is then fixed.

Every stage appends its row to ``pipeline_runs`` after its own commits
(succeeded, with the Delta versions it read and wrote, or failed, with the
error). A run whose stages all succeeded appends a last ``run`` row: status
``published`` when every stage of the conf's ``stages`` has succeeded for D
(in this run or, for a night split over several jobs, in earlier ones, each
stage's latest row counting; for ingest, which lands whatever arrived for no
particular date, its latest row of any date), else ``partial``. Consumers read the last
published date (:func:`runs.last_published_date`), never a night that is
half written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from pyspark.sql import SparkSession

from lifecycle_recs.config import Config
from lifecycle_recs.context import RunContext, StageResult
from lifecycle_recs.dates import add_days, iso, utc_now
from lifecycle_recs.io import runs, tables
from lifecycle_recs.ml import artifacts
from lifecycle_recs.names import PIPELINE_STAGES
from lifecycle_recs.stages import embeddings, evaluate, ingest, lifecycle, score, sequences, train

log = logging.getLogger(__name__)

StageFn = Callable[[RunContext], Dict[str, object]]

# The one registry: stage name -> run(ctx). Names and order are ``names.PIPELINE_STAGES``.
REGISTRY: Dict[str, StageFn] = {
    "ingest": ingest.run,
    "sequences": sequences.run,
    "lifecycle": lifecycle.run,
    "embeddings": embeddings.run,
    "train": train.run,
    "score": score.run,
    "evaluate": evaluate.run,
}
assert tuple(REGISTRY) == PIPELINE_STAGES, "pipeline.REGISTRY and names.PIPELINE_STAGES disagree"
# Stages that run before D is known (they do not read it).
WITHOUT_DATE = ("ingest",)
# Stages that read the training snapshot T = D - H: when one runs, the data stages build T too.
NEED_TRAINING_SNAPSHOT = ("train", "evaluate")


@dataclass
class NightlyRun:
    context: RunContext
    results: List[StageResult] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    published: bool = False  # every stage of the conf has succeeded for D

    @property
    def snapshot_date(self) -> Optional[str]:
        return self.context.snapshot_date


def resolve_date(spark: SparkSession, cfg: Config, given: Optional[str]) -> str:
    """The ``--date`` given, or the last event date in ``events``."""
    if given is not None:
        return iso(given)
    last = tables.last_partition_date(spark, cfg, "events")
    if last is None:
        raise RuntimeError("events table is empty: nothing to build (run ingest, or give --date)")
    log.info("no --date given: using the last event date %s", last)
    return last.isoformat()


class DateBeyondEvents(ValueError):
    """``--date`` is further after the last event date than ``publish.max_days_after_events``."""


def check_date_has_events(spark: SparkSession, cfg: Config, d: str) -> None:
    """Refuse a D past the events (a typo such as 2099-01-01 would become the published date
    that consumers then stay on)."""
    limit = cfg.publish.max_days_after_events
    if limit is None or not tables.exists(spark, cfg, "events"):
        return
    last = tables.last_partition_date(spark, cfg, "events")
    if last is None:
        return
    gap = (dt.date.fromisoformat(d) - last).days
    if gap > limit:
        raise DateBeyondEvents(
            f"D = {d} is {gap} days after the last event date {last} "
            f"(publish.max_days_after_events = {limit}): its snapshots would hold no new data "
            "and become the published date. Give a date with events, or raise the limit "
            "(null: no check)"
        )


def _with_dates(ctx: RunContext, d: str, with_training_snapshot: bool) -> RunContext:
    dates = (d,)
    if with_training_snapshot:
        dates += (dataclasses.replace(ctx, snapshot_date=d).training_date,)
    return dataclasses.replace(ctx, snapshot_date=d, snapshot_dates=dates)


def run_nightly(
    spark: SparkSession,
    cfg: Config,
    snapshot_date: Optional[str] = None,
    stages: Optional[Sequence[str]] = None,
    training_snapshot: Optional[bool] = None,
) -> NightlyRun:
    """Run ``stages`` (default: the config's) for D (default: the last event date after ingest).

    ``training_snapshot``: whether the data stages also build T = D - H; by default
    exactly when a stage that reads it (train, evaluate) is among the stages run."""
    stages = list(stages or cfg.stages)
    if training_snapshot is None:
        training_snapshot = any(s in NEED_TRAINING_SNAPSHOT for s in stages)
    unknown = [s for s in stages if s not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; known: {list(REGISTRY)}")
    given = iso(snapshot_date) if snapshot_date is not None else None
    run = NightlyRun(RunContext(spark, cfg, None))
    if given is not None:  # known up front: ingest's row carries it too
        run.context = _with_dates(run.context, given, training_snapshot)
    run_started, run_t0 = utc_now(), time.perf_counter()
    checked = False
    for name in stages:
        if name not in WITHOUT_DATE and run.context.snapshot_date is None:
            run.context = _with_dates(
                run.context, resolve_date(spark, cfg, given), training_snapshot
            )
        if name not in WITHOUT_DATE and not checked:  # after ingest: today's events count
            check_date_has_events(spark, cfg, run.context.snapshot_date)
            checked = True
        started, t0 = utc_now(), time.perf_counter()
        before = tables.versions(spark, cfg, RECORDED_TABLES)
        log.info("stage %s: start (D=%s)", name, run.context.snapshot_date)
        try:
            info = REGISTRY[name](run.context) or {}
        except Exception as e:
            _record(
                spark,
                cfg,
                run,
                name,
                "failed",
                started,
                time.perf_counter() - t0,
                before,
                {},
                {},
                redact_error(e),
            )
            raise
        res = StageResult(name, time.perf_counter() - t0, info)
        run.results.append(res)
        after = tables.versions(spark, cfg, RECORDED_TABLES)
        _record(
            spark,
            cfg,
            run,
            name,
            "succeeded",
            started,
            res.seconds,
            before,
            {t: v for t, v in after.items() if before.get(t) != v},
            info,
        )
        log.info("stage %s: done in %.1fs %s", name, res.seconds, info)
    if run.context.snapshot_date is None:  # only date-free stages ran
        run.context = _with_dates(run.context, resolve_date(spark, cfg, given), training_snapshot)
    missing = runs.stages_not_succeeded(
        spark, cfg, run.context.snapshot_date, cfg.stages, WITHOUT_DATE
    )
    status = "partial" if missing else "published"
    run.published = not missing
    _record(
        spark,
        cfg,
        run,
        "run",
        status,
        run_started,
        time.perf_counter() - run_t0,
        {},
        {},
        {"stages": stages, "not_yet_succeeded": missing},
    )
    if missing:
        log.info(
            "night %s not published yet: stage(s) %s of the conf have not succeeded for it",
            run.context.snapshot_date,
            missing,
        )
    return run


# the tables whose versions each pipeline_runs row records
RECORDED_TABLES = tuple(t for t in tables.TABLE_NAMES if t != "pipeline_runs")


# what a shared table may say of a failure: no paths, URLs or hosts (the log has the rest)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")
_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?(?:[/\\][^\s/\\'\"`,;:()\[\]]+){2,}[/\\]?")
ERROR_CHARS = 300


def redact_error(e: BaseException) -> str:
    """The exception's type and the first line of its message, with URLs and file paths
    replaced, at most ``ERROR_CHARS`` characters: what ``pipeline_runs.error`` stores."""
    first = next((x for x in str(e).splitlines() if x.strip()), "")
    text = _PATH.sub("<path>", _URL.sub("<url>", first.strip()))
    out = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return out if len(out) <= ERROR_CHARS else out[: ERROR_CHARS - 1] + "…"


def _record(
    spark: SparkSession,
    cfg: Config,
    run: NightlyRun,
    stage: str,
    status: str,
    started,
    seconds: float,
    inputs: Dict[str, int],
    outputs: Dict[str, int],
    info: Dict[str, object],
    error: Optional[str] = None,
):
    """Append this stage's (or the run's) row to ``pipeline_runs``: its last commit."""
    d = run.context.snapshot_date
    model = info.get("model_version") or info.get("artifact")
    row = {
        "run_id": run.run_id,
        "snapshot_date": dt.date.fromisoformat(d) if d else None,
        "stage": stage,
        "status": status,
        "started_at": started,
        "finished_at": utc_now(),
        "seconds": float(seconds),
        "input_versions": inputs or None,
        "output_versions": outputs or None,
        "counts": json.dumps(info, default=str, sort_keys=True),
        "model_version": str(model) if model else None,
        "error": error,
    }
    try:
        tables.append_run_rows(spark, cfg, [row])
    except Exception:  # the stage's own outcome stands; a failed bookkeeping write is logged
        if status != "failed":
            raise
        log.exception("could not record the failure of stage %s in pipeline_runs", stage)


def warm_up(
    spark: SparkSession,
    cfg: Config,
    date: Optional[str] = None,
    stages: Optional[Sequence[str]] = None,
) -> Tuple[List[str], Optional[str]]:
    """A first deployment's extra night: ingest (when among ``stages``), then unless a
    model is already promoted on or before T = D - H, run the data stages and train
    for night T (the model trains on T - H), so that evaluate can measure every
    labelled user of T with a model that never saw (T, D]. The catalog's text vectors
    come first when ``embeddings`` is among the stages, so the model evaluated is built
    like the nightly one (night D then skips every text already embedded). Returns the
    stages left for night D, and D."""
    stages = list(stages or cfg.stages)
    if "ingest" in stages:
        date = run_nightly(spark, cfg, date, ["ingest"]).snapshot_date or date
        stages.remove("ingest")
    if date is None:
        raise ValueError("warm-up needs a date or the ingest stage (to know D)")
    night_t = add_days(date, -cfg.lifecycle.horizon_days)
    if artifacts.promoted_version(cfg.artifacts, as_of=night_t) is None:
        log.info(
            "warm-up: training the model of night %s (on %s)",
            night_t,
            add_days(night_t, -cfg.lifecycle.horizon_days),
        )
        run_nightly(
            spark,
            cfg,
            night_t,
            [
                *(["embeddings"] if "embeddings" in stages else []),
                "sequences",
                "lifecycle",
                "train",
            ],
        )
    return stages, date
