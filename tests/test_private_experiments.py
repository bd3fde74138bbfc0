"""Permissions that hide: `trainlab.team.users` offers exactly the permissions the server grants
(DENY included), and a team service started with no default access (`--default-permission
NO_PERMISSIONS`) keeps one user's experiment invisible and unreadable to another: not listed, not
found by name, its runs, params and artifacts refused. A real MLflow server with basic-auth on a
real PostgreSQL database and SeaweedFS (tests/team_service.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from mlflow.exceptions import MlflowException
from mlflow.server.auth.permissions import RESOURCE_GRANTABLE_PERMISSIONS
from mlflow.tracking import MlflowClient

from trainlab.team import auth


def test_users_offers_exactly_the_permissions_the_server_grants():
    assert set(auth.PERMISSIONS) == set(RESOURCE_GRANTABLE_PERMISSIONS)
    assert "DENY" in auth.PERMISSIONS and "NO_PERMISSIONS" not in auth.PERMISSIONS


@pytest.fixture(scope="module")
def private_team(tmp_path_factory) -> Iterator:
    from tests.team_service import team_service

    with team_service(tmp_path_factory.mktemp("private-team"), "NO_PERMISSIONS") as team:
        team.add_user("alice", ("EDIT", "alice_private"))
        team.add_user("bob", ("EDIT", "bob_own"))
        yield team


@contextmanager
def signed_in(team, user: str) -> Iterator[MlflowClient]:
    saved = dict(os.environ)
    os.environ.update(team.client_env(user))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        yield MlflowClient(team.url)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def refused(call) -> bool:
    try:
        call()
    except MlflowException as err:
        return "PERMISSION_DENIED" in str(err.error_code) or "403" in str(err)
    except Exception as err:  # an artifact download through the proxy: an HTTP error
        return "403" in str(err) or "Permission" in str(err)
    return False


def hidden(call) -> bool:
    """Refused, or answered with nothing (a search filtered to what the user may read)."""
    found: list = []
    denied = refused(lambda: found.extend(call()))
    return denied or not found


@pytest.mark.slow
def test_a_private_experiment_is_invisible_and_unreadable_to_another_user(private_team):
    team = private_team
    with signed_in(team, "alice") as alice:
        experiment = alice.get_experiment_by_name("alice_private")
        assert experiment is not None
        run = alice.create_run(experiment.experiment_id)
        alice.log_param(run.info.run_id, "secret", "42")
        alice.log_text(run.info.run_id, "private notes", "notes.txt")
        alice.set_terminated(run.info.run_id)
        run_id, exp_id = run.info.run_id, experiment.experiment_id
        assert alice.get_run(run_id).data.params["secret"] == "42"
    with signed_in(team, "bob") as bob:
        names = {e.name for e in bob.search_experiments()}
        assert "alice_private" not in names and "bob_own" in names
        assert refused(lambda: bob.get_experiment(exp_id))
        assert refused(lambda: bob.get_experiment_by_name("alice_private"))
        assert refused(lambda: bob.get_run(run_id))
        assert hidden(lambda: bob.search_runs([exp_id]))
        assert refused(lambda: bob.list_artifacts(run_id))
        assert refused(lambda: bob.download_artifacts(run_id, "notes.txt"))
        assert refused(lambda: bob.create_run(exp_id))


@pytest.mark.slow
def test_deny_is_granted_through_the_users_command(private_team):
    team = private_team
    printed = team.users("grant", "bob", "DENY", "alice_private")
    assert "bob: DENY on experiment alice_private" in printed
    assert "bob on experiment alice_private: DENY" in team.users("show", "bob", "alice_private")
    with signed_in(team, "bob") as bob:
        experiment = {e.name: e for e in bob.search_experiments()}
        assert "alice_private" not in experiment
