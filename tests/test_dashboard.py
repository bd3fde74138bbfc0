"""`make ui` (python -m trainlab.commands.dashboard): a real `mlflow server` over the embedded store."""

from __future__ import annotations

import socket
import subprocess
import urllib.parse
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from tests.dashboard_server import free_port, ui_command, ui_env
from trainlab.recorder.experiments import experiment_id

pytestmark = pytest.mark.slow  # end to end: real subprocesses and servers


def test_prints_its_address_and_serves_the_store_with_artifacts(dashboard, monkeypatch):
    home, url, printed = dashboard
    monkeypatch.setenv("TRAINLAB_HOME", str(home))
    assert f"MLflow dashboard at {url}" in printed and str(home / "mlflow.db") in printed
    # A run written to the embedded store directly (as trainlab-train writes it) ...
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    root = str(home / "mlartifacts")
    run = client.create_run(experiment_id(client, "ui-check", root), run_name="ui-run")
    picture = home / "loss.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    client.log_artifact(run.info.run_id, str(picture), "plots")
    assert run.info.artifact_uri.startswith((home / "mlartifacts").as_uri())
    # ... is listed by the server, and its file:// artifact comes back through it.
    query = urllib.parse.urlencode({"path": "plots/loss.png", "run_uuid": run.info.run_id})
    with urllib.request.urlopen(f"{url}/get-artifact?{query}", timeout=30) as response:
        assert response.read() == picture.read_bytes()
    search = f"{url}/api/2.0/mlflow/runs/get?run_id={run.info.run_id}"
    with urllib.request.urlopen(search, timeout=30) as response:
        assert b"ui-run" in response.read()


def test_second_start_reports_the_running_dashboard(dashboard):
    home, url, _ = dashboard
    port = int(url.rsplit(":", 1)[1])
    again = subprocess.run(
        ui_command(port), env=ui_env(home), capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"The MLflow dashboard is already running at {url}"


def test_port_held_by_another_program_is_one_clear_line(tmp_path):
    port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        done = subprocess.run(
            ui_command(port), env=ui_env(tmp_path), capture_output=True, text=True, timeout=120
        )
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"port {port} on 127.0.0.1 is taken by another program" in done.stderr
    assert f"UI_PORT={port + 1}" in done.stderr
