"""The pieces of "metrics commit with the checkpoint", each on real parts: the recorder's gate on
a real SQLite store, best-k slots on real files, the batcher's position, the job key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from mlflow.tracking import MlflowClient

from tests.helpers import history
from trainlab.callbacks.checkpoint_writer import CheckpointSaver
from trainlab.checkpoints.files import link_best
from trainlab.config.checkpoint import CheckpointConfig, job_key
from trainlab.data.batches import TensorBatches
from trainlab.recorder.commits import COMMITTING_TAG, HELD_PER_WRITE, STEP_TAG
from trainlab.recorder.writer import RunWriter
from trainlab.tracking.messages import Commit, Rows, RunSpec


def rows(first: int, last: int) -> Rows:
    steps = np.arange(first, last, dtype=np.int64)
    values = np.stack([steps * 1.0, steps * 2.0], axis=1)
    return Rows(
        keys=("train/loss", "weight/0_0"), steps=steps, times=steps * 0 + 1000, values=values
    )


def staged(folder: Path, step: int) -> Path:
    path = folder / "last.ckpt.partial"
    path.write_text(f"checkpoint {step}")
    return path


def checkpoint(folder: Path, step: int) -> Commit:
    """The COMMIT of the checkpoint of `step`, staged in `folder` as the trainer stages it."""
    return Commit(step=step, staged=str(staged(folder, step)), last=str(folder / "last.ckpt"))


def spec(uri: str, run_id: str | None = None) -> RunSpec:
    # Artifacts beside the store, as trainlab's own runs keep them (never ./mlruns).
    artifacts = Path(uri.removeprefix("sqlite:///")).parent / "artifacts"
    return RunSpec(
        uri=uri,
        experiment_name="gate",
        run_name=None,
        tags={},
        artifact_root=str(artifacts),
        resume_run_id=run_id,
        gated=True,
    )


def test_rows_wait_for_the_commit_that_covers_them(client: MlflowClient, tmp_path: Path):
    uri = client.tracking_uri
    writer = RunWriter(client, spec(uri), {})
    run_id = writer.run_id
    writer.rows(rows(0, 10))  # no checkpoint yet: written at once
    assert len(history(client, run_id)) == 10
    writer.commit(checkpoint(tmp_path, 10))
    writer.rows(rows(10, 20))  # from now on held until the next commit
    assert len(history(client, run_id)) == 10
    writer.commit(checkpoint(tmp_path, 20))
    assert [s for s, _ in history(client, run_id)] == list(range(20))
    assert (tmp_path / "last.ckpt").read_text() == "checkpoint 20"
    assert not (tmp_path / "last.ckpt.partial").exists()
    tags = client.get_run(run_id).data.tags
    assert tags[STEP_TAG] == tags[COMMITTING_TAG] == "20"
    assert [a.path for a in client.list_artifacts(run_id, "checkpoints")] == [
        "checkpoints/last.ckpt"
    ]
    # The trainer died: what came after the last commit is dropped (the resume recomputes it).
    writer.rows(rows(20, 25))
    writer.gate.end(resumable=True)
    assert len(history(client, run_id)) == 20


def test_held_hand_overs_are_written_together_in_order(client: MlflowClient, tmp_path: Path):
    """At a commit the held rows go in a few writes (a transaction each on the bulk path) of
    about HELD_PER_WRITE values, every row in order; a hand-over of two key sets too."""
    writer = RunWriter(client, spec(client.tracking_uri), {})
    writer.commit(checkpoint(tmp_path, 0))
    write, sizes = writer.gate.write, []
    writer.gate.write = lambda *held: (sizes.append(sum(r.values.size for r in held)), write(*held))
    for first in range(0, 50 * 500, 500):  # 50 hand-overs of 1001 values
        val = Rows(keys=("val/loss",), steps=np.array([first]), times=np.array([1000]),
                   values=np.array([[first * 0.5]]))  # fmt: skip
        writer.rows(rows(first, first + 500), val)
    assert sizes == [] and history(client, writer.run_id) == []
    writer.commit(checkpoint(tmp_path, 50 * 500))
    assert sum(sizes) == 50 * 1001 and len(sizes) == -(-50 * 1001 // HELD_PER_WRITE)
    assert all(HELD_PER_WRITE <= size < HELD_PER_WRITE + 1000 for size in sizes[:-1])
    assert history(client, writer.run_id) == [(s, s * 1.0) for s in range(50 * 500)]
    assert history(client, writer.run_id, "val/loss") == [
        (s, s * 0.5) for s in range(0, 25000, 500)
    ]


def test_a_commit_cut_short_is_not_recorded_twice(client: MlflowClient, tmp_path: Path):
    uri = client.tracking_uri
    writer = RunWriter(client, spec(uri), {})
    run_id = writer.run_id
    writer.rows(rows(0, 10))
    writer.commit(checkpoint(tmp_path, 10))
    # As if the recorder died while writing the segment of the commit at step 20: the mark
    # says 20 is being committed, and only part of it (steps 10..14) is in the store.
    client.set_tag(run_id, COMMITTING_TAG, "20")
    writer.write_rows(rows(10, 15))
    # The resume starts from the committed checkpoint (10) and recomputes 10..19.
    resumed = RunWriter(client, spec(uri, run_id), {})
    assert resumed.skip == {"train/loss": 14, "weight/0_0": 14}
    resumed.rows(rows(10, 20))
    resumed.commit(checkpoint(tmp_path, 20))
    for key in ("train/loss", "weight/0_0"):
        assert [s for s, _ in history(client, run_id, key)] == list(range(20))


def test_best_k_slots_keep_their_names(tmp_path: Path):
    saver = CheckpointSaver(tmp_path, None, CheckpointConfig(save_top_k=2), "train/loss")
    last = tmp_path / "last.ckpt"
    for step, value in [(1, 5.0), (2, 3.0), (3, 4.0), (4, 9.0), (5, 1.0)]:
        staged(tmp_path, step).replace(last)  # as the recorder does: renamed, never rewritten
        link_best(last, saver._rank(value, step), 2)
    assert saver.best == [(1.0, 5), (3.0, 2)]
    assert (tmp_path / "best-1.ckpt").read_text() == "checkpoint 5"
    assert (tmp_path / "best-2.ckpt").read_text() == "checkpoint 2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-1.ckpt", "best-2.ckpt", "last.ckpt"]
    maximum = CheckpointSaver(tmp_path, None, CheckpointConfig(mode="max"), "val/loss")
    assert [maximum._rank(v, s) for s, v in [(1, 1.0), (2, 0.5), (3, 2.0)]] == [1, None, 1]
    assert maximum._rank(float("nan"), 4) is None


def test_the_batcher_resumes_inside_an_epoch():
    x = torch.arange(20.0).reshape(10, 2)
    y = torch.arange(10.0).reshape(10, 1)
    first = TensorBatches(x, y, 3, shuffle=True, seed=7)
    next(iter(first))  # epoch 0
    epoch = iter(first)
    seen = [next(epoch) for _ in range(2)]
    first.at_batch(2)
    state = first.state_dict()
    rest = list(epoch)
    second = TensorBatches(x, y, 3, shuffle=True, seed=7)
    second.load_state_dict(state)
    resumed = list(iter(second))
    assert len(seen) + len(resumed) == len(first) == 4
    assert all(torch.equal(a[0], b[0]) for a, b in zip(rest, resumed, strict=True))
    # The next epoch draws the same order in both.
    assert all(torch.equal(a[0], b[0]) for a, b in zip(iter(first), iter(second), strict=True))


def test_job_key_is_the_trained_config_and_the_sweep_job():
    config = {"optimizer": {"lr": 0.1}, "max_epochs": 100, "resume": None, "tags": {}}
    same = {**config, "max_epochs": 500, "resume": "auto", "tags": {"owner": "me"}}
    other = {**config, "optimizer": {"lr": 0.2}}
    assert job_key(config, None, None) == job_key(same, None, None)
    assert job_key(config, None, None) != job_key(other, None, None)
    assert job_key(config, "/sweep", 0) != job_key(config, "/sweep", 1)
    assert job_key(config, "/sweep", 0) != job_key(config, "/other", 0)
