"""Review: the MLflow UI (`make ui`) driven by headless Chromium, the HTML run report, the Optuna dashboard."""

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from pipeline.cli import main
from tests.conftest import ROOT, free_port, tracking_store, wait_http

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_mlflow_ui_opens_on_the_runs_table_and_shows_a_stage_run_its_plot_and_the_champions_version_page(tmp_path, monkeypatch, capsys):
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip("needs Debian chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    monkeypatch.chdir(tmp_path)  # the run's artifacts land under ./mlruns here
    store = tmp_path / "mlflow.db"
    config = tmp_path / "config.yaml"
    config.write_text("train: {max_epochs: 1, batch_size: 512}\n")
    args = ["run", "--rows", "3000", "--out", str(tmp_path / "out"), "--tracking-uri", tracking_store(store), "--config", str(config)]
    capsys.readouterr()
    assert main([*args, "--search", "none", "--tag", "date=2026-11-29"]) == 0
    address = re.search(r"then http://127\.0\.0\.1:5000/(#/experiments/\d+\?workflowType=machine_learning)", capsys.readouterr().err)
    decision = json.loads((tmp_path / "out" / "promote" / "decision.json").read_text())
    assert decision["decision"] == "promoted"
    port = free_port()
    log = tmp_path / "ui.log"
    ui = subprocess.Popen(
        ["make", "-s", "ui", f"UI_STORE={store}", f"UI_PORT={port}"],
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    base = f"http://127.0.0.1:{port}"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(arg)
    driver = None
    try:
        wait_http(f"{base}/health", ui, log)
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        wait = WebDriverWait(driver, 60)

        def link(text):
            return (By.XPATH, f"//a[normalize-space()='{text}']")

        # The address the run printed opens the experiment on its runs table, not on MLflow 3's GenAI overview.
        driver.get(f"{base}/{address.group(1)}")
        parent = wait.until(ec.element_to_be_clickable(link("pipeline synthetic planted 3,000 rows 2026-11-29")))
        assert "/runs" in driver.current_url and not driver.find_elements(By.XPATH, "//*[normalize-space(text())='Token usage']")
        # nested runs start collapsed under their parent: the expander button in the run-name cell
        parent.find_element(By.XPATH, "./ancestor::span[contains(@class,'ag-cell-value')]//button").click()
        child = wait.until(ec.element_to_be_clickable(link("rank")))
        child_id = child.get_attribute("href").rstrip("/").split("/")[-1]
        child.click()
        wait.until(ec.url_contains(f"/runs/{child_id}"))
        wait.until(ec.visibility_of_element_located((By.XPATH, "//*[normalize-space(text())='cells_per_s']")))
        tab = "//*[@role='tab' and normalize-space()='Artifacts'] | //a[normalize-space()='Artifacts']"
        wait.until(ec.element_to_be_clickable((By.XPATH, tab))).click()
        wait.until(ec.element_to_be_clickable((By.XPATH, "//*[normalize-space(text())='ranking.png']"))).click()
        image = wait.until(ec.visibility_of_element_located((By.XPATH, "//img[starts-with(@src,'blob:')]")))
        wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image))
        assert driver.execute_script("return arguments[0].naturalWidth", image) > 100  # the ranking plot rendered
        # The champion's version page: its alias and the promotion's reason in its description.
        name, version = decision["registered_model"], decision["challenger"]["version"]
        driver.get(f"{base}/#/models/{name}/versions/{version}")
        wait.until(ec.visibility_of_element_located((By.XPATH, "//*[contains(normalize-space(.), 'champion') and not(*)]")))
        wait.until(ec.visibility_of_element_located((By.XPATH, "//*[contains(normalize-space(.), 'is the first') and not(*)]")))
        driver.save_screenshot(str(tmp_path / "version.png"))
    finally:
        if driver is not None:
            driver.quit()
        _stop(ui)


def test_report_html_has_decisions_comparison_and_plots(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("search:\n  optfs: {epochs: 2, l1: 0.001, gate_lr: 0.05}\ntrain: {model: fm, max_epochs: 2, batch_size: 1024}\n")
    out = tmp_path / "out"
    args = ["run", "--out", str(out), "--config", str(config), "--rows", "8000", "--search", "optfs", "--no-tracking"]
    assert main(args) == 0
    html = (out / "report" / "report.html").read_text()
    text = re.sub(r"<[^>]+>", " ", html)
    ranking = (out / "rank" / "ranking.csv").read_text().splitlines()
    top = ranking[1].split(",")[1]
    assert "Features and selection" in text and top in text and "Quality flags" in text and "Top pairs" in text
    optfs = json.loads((out / "search" / "optfs.json").read_text())
    assert f"OptFS kept {optfs['kept_values']:,} of {optfs['total_values']:,} values" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert "Model comparison" in text and "baseline (unsearched)" in text and f"{metrics['test_auc']:.6f}" in text
    assert html.count("data:image/png;base64,") == 2  # ranking and learning curve (no study: no Pareto plot)
    assert "ran" in text and json.loads((out / "run.json").read_text())["stages"]["report"]["action"] == "ran"
    # the same OUT without a search: the earlier search's folder stays, and is not this run's report's
    assert main([*args[:-3], "--search", "none", "--no-tracking"]) == 0
    again = re.sub(r"<[^>]+>", " ", (out / "report" / "report.html").read_text())
    assert "Search decisions" in text and "Search decisions" not in again and "OptFS kept" not in again


def test_optuna_dashboard_serves_the_run_study_and_rejects_a_bad_storage(tmp_path, capsys):
    import optuna

    run = tmp_path / "run"
    (run / "search").mkdir(parents=True)
    study = optuna.create_study(
        study_name="search", storage=f"sqlite:///{run / 'search' / 'study.db'}", directions=["maximize", "minimize"]
    )
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=2)
    port = free_port()
    log = tmp_path / "dash.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "dashboard", "--storage", str(run), "--port", str(port)],
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/studies", proc, log, 60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as resp:
            studies = json.loads(resp.read())["study_summaries"]
        assert [s["study_name"] for s in studies] == ["search"]
    finally:
        _stop(proc)
    (tmp_path / "junk.db").write_text("not a database")
    capsys.readouterr()
    assert main(["dashboard", "--storage", str(tmp_path / "junk.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a readable Optuna study" in err
    assert main(["dashboard", "--storage", str(tmp_path / "nothing")]) == 2
