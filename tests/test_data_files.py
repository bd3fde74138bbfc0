"""CSV and Parquet files, written into a temporary folder and read by trainlab's loader (pyarrow):
labels and their classes, the files people really have (a BOM, `;`, blank lines, spaces), and
each bad file as one line that names what is wrong."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tests.helpers import all_runs, run_composed
from trainlab.config.data import CsvDataConfig, ParquetDataConfig
from trainlab.data.file_checks import check_source
from trainlab.data.sources import load_dataset
from trainlab.errors import ConfigError

LEAN = ("print_every=0", "tracking.plots=false", "tracking.log_model=false")
HOUSES = "size,rooms,kind\n1,2,flat\n2,1,house\n3,3,flat\n4,2,villa\n"


def csv(folder: Path, text: str, name: str = "data.csv", encoding: str = "utf-8") -> str:
    path = folder / name
    path.write_text(text, encoding=encoding)
    return str(path)


def load(path: str, target: str = "y", task: str = "regression", **keys):
    schema = ParquetDataConfig if path.endswith(".parquet") else CsvDataConfig
    return load_dataset(schema(path=path, target=target, **keys), seed=0, task=task)


def refused(message: str, path: str, target: str = "y", task: str = "regression", **keys):
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        load(path, target, task, **keys)
    return str(raised.value)


def test_string_labels_become_sorted_classes(tmp_path):
    data = load(csv(tmp_path, HOUSES), "kind", "classification")
    assert data.classes == ("flat", "house", "villa")
    assert data.y_train.tolist() == [0, 1, 0, 2] and data.y_train.dtype == torch.int64
    assert data.x_train.tolist() == [[1, 2], [2, 1], [3, 3], [4, 2]]
    assert data.feature_names == ["size", "rooms"] and data.target_names == ["kind"]


def test_data_classes_sets_the_class_order(tmp_path):
    path = csv(tmp_path, HOUSES)
    data = load(path, "kind", "classification", classes=["villa", "house", "flat", "castle"])
    assert data.classes == ("villa", "house", "flat", "castle")
    assert data.y_train.tolist() == [2, 1, 2, 0]
    refused(
        "has the label 'villa' in row 3, which is not one of data.classes ['flat', 'house']",
        path,
        "kind",
        "classification",
        classes=["flat", "house"],
    )


def test_integer_labels_sort_numerically(tmp_path):
    path = csv(tmp_path, "x,y\n1,10\n2,2\n3,1\n4,2\n")
    data = load(path, task="classification")
    assert data.classes == ("1", "2", "10") and data.y_train.tolist() == [2, 1, 0, 1]
    ordered = load(path, task="classification", classes=["10", "2", "1"])
    assert ordered.y_train.tolist() == [0, 1, 2, 1]
    whole = load(csv(tmp_path, "x,y\n1,1.0\n2,0.0\n3,1.0\n", "floats.csv"), task="classification")
    assert whole.classes == ("0", "1") and whole.y_train.tolist() == [1, 0, 1]


def test_spaces_blank_lines_and_a_bom_are_what_spreadsheets_write(tmp_path):
    text = "\ufeff size , rooms , kind \n 1 , 2 , flat \n\n2,1, house\n,,\n3,3,flat\n\n"
    data = load(csv(tmp_path, text), "kind", "classification")
    assert data.feature_names == ["size", "rooms"]
    assert data.x_train.tolist() == [[1, 2], [2, 1], [3, 3]]
    assert data.classes == ("flat", "house") and data.y_train.tolist() == [0, 1, 0]


def test_a_semicolon_file_reads_with_its_delimiter_and_says_so_without(tmp_path):
    path = csv(tmp_path, "x;y\n1;2\n2;4\n")
    assert load(path, delimiter=";").y_train.tolist() == [[2.0], [4.0]]
    refused(
        "data.target='y' is not a column of data.csv; columns: ['x;y']; expected "
        "data.delimiter=';' (the header looks ';'-separated)",
        path,
    )


def test_missing_and_bad_cells_name_their_column_and_row(tmp_path):
    refused(
        "data: features contain NaN or inf (first at row 2)", csv(tmp_path, "x,y\n1,2\n2,4\n,6\n")
    )
    refused("data: targets contain NaN or inf (first at row 1)", csv(tmp_path, "x,y\n1,2\n2,NaN\n"))
    refused(
        "data.target='y' has no label in row 1 (an empty or NaN cell); expected a class",
        csv(tmp_path, "x,y\n1,a\n2,\n3,b\n"),
        task="classification",
    )
    refused(
        "column 'x' has non-numeric values ('2,5' in row 1); expected numbers",
        csv(tmp_path, 'x,y\n1,2\n"2,5",4\n'),
    )
    refused(
        "not a readable CSV (CSV parse error: Expected 2 columns, got 1",
        csv(tmp_path, "x,y\n1,2\n3\n"),
    )


def test_missing_columns_are_named_with_the_columns_there_are(tmp_path):
    path = csv(tmp_path, HOUSES)
    refused(
        "data.target='price' is not a column of data.csv; columns: ['size', 'rooms', 'kind']",
        path,
        "price",
    )
    refused("data.features: 'age' is not a column of data.csv", path, "kind", features=["age"])
    with pytest.raises(ConfigError, match="a classification loss learns one label column"):
        check_source(CsvDataConfig(path=path, target=["kind", "size"]), "classification")


def test_labels_that_do_not_suit_the_loss(tmp_path):
    path = csv(tmp_path, "x,y,kind\n1,0.5,a\n2,1.5,a\n3,2.0,a\n")
    refused(
        "data.target='y' holds numbers such as 0.5 (row 0), a regression target, and a "
        "classification loss needs class labels",
        path,
        task="classification",
        features=["x"],
    )
    refused(
        "data: the target 'kind' holds one class ('a') in all 3 rows; expected at least two",
        path,
        "kind",
        "classification",
        features=["x"],
    )
    message = refused(
        "column 'kind' has non-numeric values ('a' in row 0); expected numbers",
        path,
        "kind",
        features=["x"],
    )
    assert "loss=cross_entropy" in message  # the way to learn labels


def test_a_parquet_file_reads_numbers_and_labels(tmp_path):
    path = tmp_path / "houses.parquet"
    table = pa.table(
        {
            "size": [1.5, 2.0, 3.0, 4.0],
            "rooms": pa.array([2, 1, 3, 2], pa.int32()),
            "kind": ["flat", "house", "flat", None],
        }
    )
    pq.write_table(table, path)
    data = load(str(path), "rooms", features=["size"])
    assert data.x_train.tolist() == [[1.5], [2.0], [3.0], [4.0]]
    assert data.y_train.tolist() == [[2.0], [1.0], [3.0], [2.0]]
    refused("data.target='kind' has no label in row 3", str(path), "kind", "classification")
    labels = load(str(path), "rooms", "classification", features=["size"])
    assert labels.classes == ("1", "2", "3") and labels.y_train.tolist() == [1, 0, 2, 1]


def test_pandas_s_stored_index_is_not_a_feature(tmp_path):
    path = tmp_path / "frame.parquet"
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["a", "b", "a"]}, index=[7, 8, 9])
    frame.to_parquet(path)
    data = load(str(path), task="classification")
    assert data.feature_names == ["x"] and data.classes == ("a", "b")


def test_a_file_in_the_other_format_is_one_line(tmp_path):
    fake = csv(tmp_path, "x,y\n1,2\n", "rows.parquet")
    refused("rows.parquet': not a Parquet file (Parquet magic bytes not found", fake)
    real = tmp_path / "real.parquet"
    pq.write_table(pa.table({"x": [1.0], "y": [2.0]}), real)
    with pytest.raises(ConfigError, match="a Parquet file, not a CSV; expected data=parquet"):
        check_source(CsvDataConfig(path=str(real), target="y"))


def test_a_relative_path_is_relative_to_the_folder_the_command_runs_in(tmp_path, monkeypatch):
    csv(tmp_path, "x,y\n1,2\n2,4\n", "here.csv")
    monkeypatch.chdir(tmp_path)
    data = load("here.csv")
    assert data.lineage[0].source == str(tmp_path / "here.csv")


def test_the_loader_needs_neither_torch_nor_pandas(tmp_path):
    """trainlab-evaluate and benchmark D1 use it alone; pyarrow's to_numpy would import pandas."""
    path = csv(tmp_path, "x,y,z\n1,2,a\n2,4,b\n")
    probe = (
        "import sys\n"
        "from trainlab.config.data import CsvDataConfig\n"
        "from trainlab.data.arrays import checked\n"
        "from trainlab.data.tables import read_table\n"
        f"raw = checked(read_table(CsvDataConfig(path={path!r}, target='z'), 'classification'))\n"
        "print(raw.x.tolist(), raw.y.tolist(), raw.classes)\n"
        "print([m for m in ('torch', 'pandas', 'lightning') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[[1.0, 2.0], [2.0, 4.0]] [0, 1] ('a', 'b')", "[]"]


def test_a_run_on_a_parquet_file_records_its_three_splits(composed, client, home):
    """Through the whole job (checks, recorder, pipeline) into a real store: the training,
    validation and test rows are each an MLflow dataset input of the run, the file its source."""
    path = home / "rows.parquet"
    x = [float(i) for i in range(20)]
    pq.write_table(pa.table({"x": x, "y": [2 * v + 1 for v in x]}), path)
    data = ("data=parquet", f"data.path={path}", "data.target=y")
    splits = ("data.val_split=0.25", "data.test_split=0.25", "max_epochs=2")
    run_composed(composed(*data, *splits, *LEAN))
    (run,) = all_runs(client)
    assert run.info.status == "FINISHED"
    found = {}
    for item in run.inputs.dataset_inputs:
        (context,) = [t.value for t in item.tags if t.key == "mlflow.data.context"]
        found[context] = item.dataset
    assert set(found) == {"training", "validation", "test"}
    assert {d.name for d in found.values()} == {"rows.parquet"}
    assert json.loads(found["test"].source) == {"uri": str(path)}
    assert [json.loads(found[c].profile)["num_rows"] for c in ("training", "test")] == [10, 5]
