"""`errors.one_line`: an exception and its causes as the one line a person reads, each thing said
once. Real exceptions from the libraries that wrap them (Hydra's instantiate, SQLAlchemy under
MLflow), raised by doing what fails."""

from __future__ import annotations

import os

import pytest
import sqlalchemy
from hydra.utils import instantiate
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from trainlab.errors import ConfigError, one_line


class Net:
    def __init__(self, width: int = 1) -> None:
        self.width = width


def test_a_cause_the_line_already_quotes_is_not_repeated():
    with pytest.raises(Exception) as raised:
        instantiate({"_target_": f"{__name__}.Net", "bias": True})
    line = one_line(raised.value)
    assert line.startswith(f"Error in call to target '{__name__}.Net'")
    assert line.count("got an unexpected keyword argument 'bias'") == 1


def test_sqlalchemy_errors_lose_the_link_statement_and_parameters(tmp_path):
    with pytest.raises(sqlalchemy.exc.OperationalError) as raised:
        sqlalchemy.create_engine(f"sqlite:///{tmp_path}/missing/folder/x.db").connect()
    assert one_line(raised.value) == "(sqlite3.OperationalError) unable to open database file"

    database = tmp_path / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    run = client.create_run(client.create_experiment("gone"))
    os.remove(database)  # removed under an open store: SQLite refuses the next write
    with pytest.raises(Exception) as raised:
        client.log_batch(run.info.run_id, metrics=[Metric("a", 1.0, 0, s) for s in range(3)])
    line = one_line(raised.value)
    assert "attempt to write a readonly database" in line and line.count("readonly") == 1
    for noise in ("[SQL:", "[parameters:", "Background on this error", "autoflush"):
        assert noise not in line, line


def test_a_cause_that_adds_something_is_still_said():
    try:
        try:
            int("x")
        except ValueError as err:
            raise ConfigError("data.path=rows.csv: column 'b' is not a number") from err
    except ConfigError as err:
        line = one_line(err)
    assert line == (
        "data.path=rows.csv: column 'b' is not a number; invalid literal for int() with base 10: 'x'"
    )
