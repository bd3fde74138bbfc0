"""A person's view: headless Chromium opens the dashboard (`make ui`) after a seed run, finds the
run in its experiment, its train/loss and its plots. Screenshots land in the test's tmp dir."""

from __future__ import annotations

import shutil

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import all_runs, run_cli

pytestmark = pytest.mark.slow  # end to end: real subprocesses and servers

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -c requirements.lock)"
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium cannot be found on this machine; .ci/run installs it (apt-get install chromium)",
)
# No GPU, no sandbox (root in CI), nothing fetched from the network besides the dashboard.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PLOTS = ("loss.png", "fit.png", "residuals.png", "weights.png")
WAIT_MS = 90_000  # the first page load compiles a large bundle; CI machines are shared


def test_dashboard_shows_the_seed_run_its_loss_and_its_plots(dashboard, tmp_path):
    home, url, _ = dashboard
    done = run_cli("experiment=seed_pipeline", "print_every=0", home=home)
    assert done.returncode == 0, done.stderr
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    run = next(r for r in all_runs(client) if r.info.run_id in done.stdout)
    expect = sync_api.expect
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(WAIT_MS)
            # The experiment's runs, in the "Model training" view (3.x opens on GenAI otherwise).
            page.goto(
                f"{url}/#/experiments/{run.info.experiment_id}/runs?workflowType=machine_learning"
            )
            link = page.get_by_text(run.info.run_name, exact=True).first
            expect(link).to_be_visible(timeout=WAIT_MS)
            page.screenshot(path=tmp_path / "experiment.png")
            link.click()
            expect(page.get_by_text(run.info.run_id).first).to_be_visible(timeout=WAIT_MS)
            expect(page.get_by_text("train/loss", exact=True).first).to_be_visible()
            expect(page.get_by_text("pred/after", exact=True).first).to_be_visible()
            page.screenshot(path=tmp_path / "run.png", full_page=True)

            page.get_by_role("tab", name="Artifacts").click()
            page.get_by_text("plots", exact=True).first.click()
            for name in PLOTS:
                expect(page.get_by_text(name, exact=True).first).to_be_visible()
            page.get_by_text("loss.png", exact=True).first.click()
            # The picture came through the server (which reads the file:// artifact) as a blob.
            image = page.locator("img[src^='blob:']").first
            expect(image).to_be_visible(timeout=WAIT_MS)
            width = image.evaluate("img => img.complete ? img.naturalWidth : 0")
            assert width == 700, width  # plots are 7 in x 100 dpi
            page.screenshot(path=tmp_path / "plots.png", full_page=True)
        finally:
            browser.close()
    for shot in ("experiment.png", "run.png", "plots.png"):
        assert (tmp_path / shot).stat().st_size > 10_000, shot
    print(f"screenshots in {tmp_path}")
