"""Nothing lost, nothing stuck: a server killed mid-run leaves the run interrupted, and
the instructor resumes it from the Train page of a restarted server to its last epoch."""

from playwright.sync_api import expect

from mnist_demo.runs import RunRegistry
from tests.e2e.test_train_e2e import PROGRESS, open_as_instructor, start_small_run
from tools.app_server import AppServer

EPOCHS = 4


def test_a_run_killed_with_its_server_is_resumed_from_the_train_page(app_home, new_page):
    server = AppServer(app_home).start()
    try:
        page = new_page()
        open_as_instructor(page, server)
        start_small_run(page, server.url, epochs=EPOCHS)
        expect(page.get_by_text(PROGRESS).first).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Test accuracy (last epoch)")).to_be_visible(timeout=60_000)
    finally:
        server.kill()  # SIGKILL: no clean-up of any kind
    registry = RunRegistry(app_home / "runs.sqlite")
    done = registry.get(1).epochs_done
    assert 1 <= done < EPOCHS, done

    restarted = AppServer(app_home).start()
    try:
        page = new_page()
        open_as_instructor(page, restarted)
        page.goto(f"{restarted.url}/train")
        # seen as interrupted once its heartbeat has been silent HEARTBEAT_STALE_S (30 s)
        expect(page.get_by_text("Latest run: 1 · interrupted")).to_be_visible(timeout=60_000)
        page.get_by_role("button", name=f"Resume run 1 from epoch {done + 1}").click()
        expect(page.get_by_text("Run 1 · lab7 · running")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Run 1 · lab7 · finished")).to_be_visible(timeout=120_000)
    finally:
        restarted.stop()
    run = registry.get(1)
    assert [r.id for r in registry.list_runs()] == [1]  # the same run, continued
    assert run.status == "finished" and run.epochs_done == EPOCHS
    assert all(len(values) == EPOCHS for values in run.history.values()), run.history
    assert run.test_accuracy is not None and run.test_accuracy > 0.8
    assert not registry.resume_path(1).exists()
