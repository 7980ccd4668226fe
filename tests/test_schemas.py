"""Table contracts: docs/tables.md documents exactly the schemas defined in
lifecycle_recs.schemas."""

from lifecycle_recs import schemas
from tests.helpers import ROOT


def test_the_table_contracts_page_matches_the_specs():
    text = (ROOT / "docs" / "tables.md").read_text()
    a = text.index(schemas.BEGIN) + len(schemas.BEGIN)
    b = text.index(schemas.END)
    assert text[a:b].strip() == schemas.markdown().strip(), (
        "docs/tables.md is stale: regenerate with python -m lifecycle_recs.schemas --write"
    )


def test_scored_tables_have_the_required_columns():
    need = {
        "recommendations": [
            "snapshot_date",
            "user_id",
            "rank",
            "item_id",
            "score",
            "strategy",
            "model_version",
        ],
        "retention_scores": [
            "snapshot_date",
            "user_id",
            "stage",
            "churn_probability",
            "retention_score",
            "predicted_value",
            "model_version",
        ],
        "user_interests": [
            "snapshot_date",
            "user_id",
            "interest_vector",
            "top_categories",
            "model_version",
        ],
    }
    for table, cols in need.items():
        spec = schemas.spec(table)
        assert set(cols) <= set(spec.names), table
        assert spec.partition_by == ("snapshot_date",)
        assert all(not c.nullable for c in spec.columns if c.name in cols)


def test_the_conf_knows_every_table_by_name():
    from lifecycle_recs.names import TABLE_NAMES
    from lifecycle_recs.schemas import TABLES

    assert TABLE_NAMES == tuple(TABLES)
