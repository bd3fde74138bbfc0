"""`make team-user`: add users to the team server and grant them permissions on experiments.

    python -m trainlab.team.users add alice --password-file ~/.alice-mlflow
    python -m trainlab.team.users grant alice EDIT team_sweep       # creates the experiment
    python -m trainlab.team.users show alice team_sweep

Talks to the server's basic-auth REST API through MLflow's own client
(`mlflow.server.get_app_client("basic-auth", ...)`) as the admin: MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD when set, else the admin user with the password the server was started
with (team/auth.py: MLFLOW_AUTH_ADMIN_PASSWORD or TRAINLAB_ADMIN_PASSWORD_FILE).

A new user's password comes from TRAINLAB_USER_PASSWORD or --password-file; a file that does not
exist yet is created (mode 600) with a new random password. It is never printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from trainlab.team import auth

PROG = "trainlab-team-user"


def fail(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def admin_environment() -> None:
    """Sign in as the admin unless the caller already named someone (who must be an admin)."""
    if os.environ.get("MLFLOW_TRACKING_USERNAME") and os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        return
    os.environ["MLFLOW_TRACKING_USERNAME"] = auth.admin_user()
    os.environ["MLFLOW_TRACKING_PASSWORD"] = auth.admin_password()


def user_password(args: argparse.Namespace) -> str:
    if os.environ.get("TRAINLAB_USER_PASSWORD"):
        return os.environ["TRAINLAB_USER_PASSWORD"]
    if args.password_file is None:
        fail("a new user needs a password: TRAINLAB_USER_PASSWORD or --password-file PATH")
    path = args.password_file.expanduser().resolve()
    if not path.exists():
        auth.write_secret_file(path, auth.new_password() + "\n")
        print(f"A new password for {args.user} is in {path} (mode 600); hand it over privately")
    return auth.read_secret_file(path, "--password-file")


def add_user(client, args: argparse.Namespace) -> None:
    """Create the user; one who exists already is left as they are (run it again freely)."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_user(args.user)
        print(f"User {args.user} exists on {args.server} (password unchanged)")
        return
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    client.create_user(args.user, user_password(args))
    print(f"User {args.user} added on {args.server}")


def grant_permission(client, user: str, exp_id: str, permission: str) -> None:
    """Grant `permission`, replacing the one the user has there (run it again freely)."""
    from mlflow.exceptions import MlflowException

    try:
        client.grant_user_permission(user, "experiment", exp_id, permission)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        client.revoke_user_permission(user, "experiment", exp_id)
        client.grant_user_permission(user, "experiment", exp_id, permission)


def experiment_id(tracking_uri: str, name: str, create: bool) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    if not create:
        fail(f"no experiment {name!r} on {tracking_uri}")
    return client.create_experiment(name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("TRAINLAB_SERVER_URI", "http://127.0.0.1:5001"),
        help="the team server (default: $TRAINLAB_SERVER_URI)",
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    add = verbs.add_parser("add", help="create a user")
    add.add_argument("user")
    add.add_argument("--password-file", type=Path, default=None)
    grant = verbs.add_parser("grant", help="grant a permission on an experiment (by name)")
    grant.add_argument("user")
    grant.add_argument("permission", choices=auth.PERMISSIONS)
    grant.add_argument("experiment")
    show = verbs.add_parser("show", help="a user's permission on an experiment")
    show.add_argument("user")
    show.add_argument("experiment")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")  # MLflow's import-time deprecation notes are not ours

    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    try:
        admin_environment()
        client = get_app_client("basic-auth", tracking_uri=args.server)
        if args.verb == "add":
            add_user(client, args)
        elif args.verb == "grant":
            exp_id = experiment_id(args.server, args.experiment, create=True)
            grant_permission(client, args.user, exp_id, args.permission)
            print(f"{args.user}: {args.permission} on experiment {args.experiment} ({exp_id})")
        else:
            exp_id = experiment_id(args.server, args.experiment, create=False)
            result = client.get_user_permission(args.user, "experiment", exp_id)
            print(f"{args.user} on experiment {args.experiment}: {result.permission}")
    except auth.AuthSetupError as err:
        fail(str(err))
    except MlflowException as err:
        fail(f"{args.server}: {str(err.message).splitlines()[0][:300]}")


if __name__ == "__main__":
    main()
