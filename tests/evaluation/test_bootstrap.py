"""quality: the Spark aggregates of replicate 0 equal the numpy / scikit-learn
figures on the same users; intervals and verdicts behave."""

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from lifecycle_recs.evaluation import bootstrap
from tests.helpers import repart


@pytest.fixture(scope="module")
def users(spark):
    rng = np.random.default_rng(0)
    n = 400
    y = (rng.random(n) < 0.3).astype(float)
    p = np.clip(0.3 + 0.4 * (y - 0.3) + rng.normal(0, 0.2, n), 0, 1)  # informative probability
    days = rng.integers(0, 60, n).astype(float) + 20 * y  # a discrete score with ties
    val = rng.gamma(1.0, 30.0, n) * (rng.random(n) < 0.6)
    pred = val * 0.7 + rng.gamma(1.0, 10.0, n)
    rows = [
        (f"u{i}", float(y[i]), float(p[i]), float(days[i]), float(val[i]), float(pred[i]))
        for i in range(n)
    ]
    df = repart(
        spark.createDataFrame(
            rows, "user_id string, y double, p double, days double, v double, vhat double"
        )
    )
    df = bootstrap.quantile_bins(df, ["p", "days", "v", "vhat"])
    for c in ("v", "vhat"):
        df = bootstrap.midranks(df, c)
    return df.cache(), dict(y=y, p=p, days=days, v=val, vhat=pred)


@pytest.mark.slow
def test_point_figures_equal_numpy(users):
    df, a = users
    rep = bootstrap.replicate(df, 0, seed=1)
    got = bootstrap.collect(
        bootstrap.binary_parts(rep, "y", {"m": "p", "r": "days"}, ["m"])
        + bootstrap.regression_parts(rep, "v", {"m": "vhat"})
    )
    val = {k: v[0][0] for k, v in got.items()}
    assert val[("r", "roc_auc")] == pytest.approx(
        skm.roc_auc_score(a["y"], a["days"]), abs=1e-12
    )  # discrete: exact
    assert val[("m", "roc_auc")] == pytest.approx(
        skm.roc_auc_score(a["y"], a["p"]), abs=2e-3
    )  # binned
    assert val[("m", "pr_auc")] == pytest.approx(
        skm.average_precision_score(a["y"], a["p"]), abs=5e-3
    )
    assert val[("m", "brier")] == pytest.approx(np.mean((a["p"] - a["y"]) ** 2), abs=1e-12)
    assert val[("m", "rmse")] == pytest.approx(
        np.sqrt(np.mean((a["vhat"] - a["v"]) ** 2)), rel=1e-12
    )
    assert val[("m", "mae")] == pytest.approx(np.mean(np.abs(a["vhat"] - a["v"])), rel=1e-12)
    assert val[("m", "total_ratio")] == pytest.approx(a["vhat"].sum() / a["v"].sum(), rel=1e-12)
    assert val[("m", "spearman")] == pytest.approx(
        stats.spearmanr(a["v"], a["vhat"]).statistic, abs=0.01
    )
    assert got[("m", "roc_auc")][0][1] == 400  # n


def test_intervals_cover_the_point_and_paired_verdicts(users):
    df, _ = users
    rep = bootstrap.replicate(df, 40, seed=1)
    s = bootstrap.summarise(
        "churn", bootstrap.collect(bootstrap.binary_parts(rep, "y", {"ours": "p", "r": "days"}, []))
    )
    by = {(x.model, x.metric): x for x in s}
    auc = by[("ours", "roc_auc")]
    assert auc.low < auc.value < auc.high and auc.n == 400
    diff = by[("ours-vs-r", "roc_auc")]
    assert diff.value == pytest.approx(auc.value - by[("r", "roc_auc")].value)
    assert diff.verdict == (
        "ours better" if diff.low > 0 else "baseline better" if diff.high < 0 else "inconclusive"
    )
    # a model against itself is never a win
    same = bootstrap.summarise(
        "churn", bootstrap.collect(bootstrap.binary_parts(rep, "y", {"ours": "p", "twin": "p"}, []))
    )
    assert {x.verdict for x in same if x.model == "ours-vs-twin"} == {"inconclusive"}


def test_verdict_reads_the_direction_of_the_metric():
    assert bootstrap.verdict("roc_auc", 0.01, 0.05) == "ours better"
    assert bootstrap.verdict("rmse", 0.01, 0.05) == "baseline better"
    assert bootstrap.verdict("rmse", -3.0, -1.0) == "ours better"
    assert bootstrap.verdict("roc_auc", -0.01, 0.02) == "inconclusive"
    assert bootstrap.verdict("roc_auc", None, None) == "inconclusive"


def test_poisson_weights_have_mean_and_variance_one(spark):
    df = spark.range(20000).selectExpr("cast(id as string) as user_id")
    w = (
        bootstrap.replicate(df, 3, seed=9)
        .where("rep > 0")
        .selectExpr("avg(w)", "variance(w)")
        .first()
    )
    assert w[0] == pytest.approx(1.0, abs=0.02) and w[1] == pytest.approx(1.0, abs=0.04)


def test_undefined_auc_is_left_out_not_nan(spark):
    df = spark.createDataFrame(
        [("a", 1.0, 0.2), ("b", 1.0, 0.9)], "user_id string, y double, p double"
    )
    rep = bootstrap.replicate(bootstrap.quantile_bins(df, ["p"]), 5, seed=1)
    got = bootstrap.collect(bootstrap.binary_parts(rep, "y", {"m": "p"}, ["m"]))
    assert ("m", "roc_auc") not in got and ("m", "brier") in got


def test_each_part_is_one_aggregate_holding_exactly_its_keys(users):
    """A part is collected in one job: it holds every metric of its aggregate, and its
    keys name exactly the (model, metric)s its rows carry."""
    df, _ = users
    rep = bootstrap.replicate(df, 2, seed=1)
    parts = (
        bootstrap.binary_parts(rep, "y", {"m": "p", "r": "days"}, ["m"])
        + bootstrap.regression_parts(rep, "v", {"m": "vhat"})
        + bootstrap.mean_parts(rep, {("m", "mean_v"): "v", ("r", "mean_v"): "vhat"})
    )
    assert len(parts) == 5  # AUCs x 2 models, Brier + calibration of m, regression of m, the means
    for part in parts:
        got = {(r["model"], r["metric"]): r["n"] for r in part.df.collect()}
        assert set(got) == set(part.keys) and len(part.df.collect()) == 3 * len(part.keys)


def test_churn_curves_equal_pandas(users):
    from lifecycle_recs.evaluation.report import churn_curves

    df, a = users
    got = churn_curves(df, "y", {"m": "p", "r": "days"}, ["m"])
    pdf = df.select("y", "p", "days", "p__bin", "days__bin").toPandas()
    for model, col in (("m", "p"), ("r", "days")):
        g = (
            pdf.groupby(f"{col}__bin")
            .agg(pos=("y", "sum"), n=("y", "size"))
            .sort_index(ascending=False)
        )
        want = list(zip(g["n"].cumsum() / len(pdf), g["pos"].cumsum() / pdf["y"].sum()))
        assert np.allclose(got[model]["gain"], want, rtol=0, atol=1e-12)
    b = np.minimum(np.floor(pdf["p"] * 10), 9)
    c = pdf.groupby(b).agg(p=("p", "mean"), o=("y", "mean"), n=("y", "size")).sort_index()
    assert np.allclose(
        got["m"]["calibration"], np.column_stack([c["p"], c["o"], c["n"]]), rtol=0, atol=1e-12
    )
    assert got["r"]["calibration"] == [] and np.allclose(got["m"]["gain"][-1], (1.0, 1.0))
