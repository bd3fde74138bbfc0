"""On a CUDA machine (skipped elsewhere): the seed pipeline, the autograd engine and the
divergence guard on the GPU, tracked in a real store, against the same runs on the CPU."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import all_runs, history, run_composed
from trainlab.callbacks.guard import DivergedError
from trainlab.recorder.commits import STEP_TAG

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SEED = ("experiment=seed_pipeline", "print_every=0", "device.precision=64", "model.init=zeros")


def test_seed_pipeline_on_the_gpu_matches_the_cpu(composed, client):
    run_composed(composed(*SEED, "device=gpu", "run_name=gpu"))
    run_composed(composed(*SEED, "device=cpu", "run_name=cpu"))
    runs = {r.info.run_name: r for r in all_runs(client)}
    assert runs["gpu"].data.tags["trainlab.device"] == "gpu"
    assert runs["gpu"].info.status == runs["cpu"].info.status == "FINISHED"
    gpu = history(client, runs["gpu"].info.run_id)
    cpu = history(client, runs["cpu"].info.run_id)
    assert [s for s, _ in gpu] == list(range(100))
    assert max(abs(a[1] - b[1]) for a, b in zip(gpu, cpu, strict=True)) < 1e-9
    assert runs["gpu"].data.metrics["pred/after"] == pytest.approx(
        runs["cpu"].data.metrics["pred/after"], rel=1e-9
    )


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed", "32"])
def test_precisions_train_on_the_gpu(composed, client, precision):
    run_composed(composed("print_every=0", "device=gpu", f"device.precision={precision}",
                          "optimizer.lr=0.03", "max_epochs=300"))  # fmt: skip
    (run,) = all_runs(client)
    assert run.info.status == "FINISHED"
    assert abs(run.data.metrics["pred/after"] - 10.0) < 0.5  # f(5) of y = 2x


def test_autograd_engine_on_the_gpu(composed, client):
    run_composed(composed("experiment=seed_autograd", "device=gpu", "print_every=0"))
    (run,) = all_runs(client)
    assert run.data.metrics["weight/0_0"] == pytest.approx(1.9999996, abs=1e-6)


def test_guard_finds_the_exact_bad_step_on_the_gpu(composed, client):
    diverging = ("data=synthetic", "data.n_samples=64", "optimizer.lr=10", "max_epochs=200")
    with pytest.raises(DivergedError) as raised:
        run_composed(composed(*diverging, "device=gpu", "print_every=0", "guard.check_every=50"))
    (run,) = all_runs(client)
    assert run.info.status == "FAILED"
    steps = history(client, run.info.run_id)
    bad = raised.value.step
    assert int(run.data.tags["trainlab.failure_step"]) == bad
    assert not math.isfinite(steps[bad][1]) or steps[bad][1] > 1e300
    assert all(math.isfinite(v) and v < 1e300 for _, v in steps[:bad])


def test_periodic_checkpoints_commit_with_the_metrics_on_the_gpu(composed, client):
    """Rows on the device are held by the recorder until each checkpoint commits them; the
    history is whole and the last commit is the last step."""
    run_composed(composed("print_every=0", "device=gpu", "max_epochs=120",
                          "checkpoint.every_n_steps=25", "checkpoint.every_seconds=null"))  # fmt: skip
    (run,) = all_runs(client)
    assert run.info.status == "FINISHED"
    assert [s for s, _ in history(client, run.info.run_id)] == list(range(120))
    assert run.data.tags[STEP_TAG] == "120"
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")][-1].endswith(
        "last.ckpt"
    )
