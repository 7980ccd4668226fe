"""The notebooks' parameters: widgets where the notebook has dbutils, $LIFECYCLE_<NAME>
elsewhere; the default conf found from the notebook's folder, whatever the working
directory."""

from lifecycle_recs import notebook
from tests.helpers import ROOT


class Widgets:
    """The part of Databricks' ``dbutils.widgets`` a notebook uses."""

    def __init__(self, values):
        self.values, self.made = dict(values), {}

    def text(self, name, default, label):
        self.made[name] = default
        self.values.setdefault(name, default)

    def get(self, name):
        return self.values[name]


class DBUtils:
    def __init__(self, **values):
        self.widgets = Widgets(values)


def test_a_parameter_is_a_widget_on_databricks_and_a_variable_elsewhere(monkeypatch):
    monkeypatch.setenv("LIFECYCLE_NIGHT", "2026-01-02")
    assert notebook.parameter({}, "night") == "2026-01-02"
    assert notebook.parameter({}, "user", "u1") == "u1"
    db = DBUtils(night="2026-03-04")
    assert notebook.parameter({"dbutils": db}, "night") == "2026-03-04"  # not the variable
    assert notebook.parameter({"dbutils": db}, "metric", "churn/roc_auc") == "churn/roc_auc"
    assert db.widgets.made == {"night": "", "metric": "churn/roc_auc"}


def test_the_default_conf_is_found_from_the_notebooks_folder(monkeypatch):
    monkeypatch.chdir(ROOT / "notebooks")  # the working directory of a notebook on a runtime
    assert notebook.default_conf() == str(ROOT / "conf" / "local.yaml")
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    assert notebook.default_conf() == str(ROOT / "conf" / "databricks.yaml")
    assert notebook.default_conf("/") is None
