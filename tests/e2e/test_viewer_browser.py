"""The viewer in a real browser: `streamlit run` as a subprocess on seeded MLflow/Prefect data, Debian's chromium.

Needs `chromium` (apt) and the `playwright` Python package; never `playwright install` (no browser downloads).
Screenshots land in a temporary folder; `make screenshots` sets CALMOPS_SCREENSHOTS=docs/images to refresh the docs.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.dashboards.seed import point_at, seed_fake_kinds, seed_sea
from tests.e2e.stack import free_port, stop

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
IMAGES = Path(os.environ.get("CALMOPS_SCREENSHOTS") or tempfile.mkdtemp(prefix="calmops-screenshots-"))
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1440, "height": 2600}
PIPELINE_TABS = ("Drift", "Performance", "Champion vs challenger", "Retraining", "Data", "Runs & logs", "Spec")


@pytest.fixture(scope="module")
def seeded(prefect_server, tmp_path_factory):
    saved = {k: os.environ.get(k) for k in ("CALMOPS_HOME", "MLFLOW_TRACKING_URI")}
    home = tmp_path_factory.mktemp("viewer-e2e") / "calmops"
    point_at(home)
    seed_sea(home)
    seed_fake_kinds()
    yield home
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def viewer(seeded, tmp_path_factory):
    """`streamlit run` with the command `calmops viewer` uses, on a free port, against the seeded stores."""
    from prefect.settings import PREFECT_API_URL

    from calmops.dashboards.cli import command

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run 'make test' (it installs it) or apt-get install -y chromium"
    port = free_port()
    env = dict(os.environ, CALMOPS_HOME=str(seeded), PREFECT_API_URL=PREFECT_API_URL.value(),
               PYTHONPATH=str(ROOT), MLFLOW_DISABLE_TELEMETRY="true", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("MLFLOW_TRACKING_URI", None)
    log = (tmp_path_factory.mktemp("viewer-log") / "streamlit.log").open("w")
    proc = subprocess.Popen(command(port=port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"{base}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start: {Path(log.name).read_text()[-3000:]}")
            time.sleep(0.3)
        yield base
    finally:
        stop(proc, grace=10)
        log.close()


@pytest.fixture(scope="module")
def browser(viewer):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


def settle(page, timeout: float = 60.0) -> None:
    """Wait until the script run is over (no 'Running' widget) and the page has stopped changing."""
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=timeout * 1000)  # every page has a title
    deadline = time.time() + timeout
    quiet_since = None
    while time.time() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0 or \
            page.locator('[data-testid="stSkeleton"]').count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since > 2.0:
            return
        time.sleep(0.25)
    raise AssertionError("the page did not finish running")


def assert_no_exception(page) -> None:
    text = page.inner_text("body")
    assert page.locator('[data-testid="stException"]').count() == 0, text[:3000]
    assert "Traceback" not in text, text[:3000]
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0, text[:3000]


def metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=label)).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def shoot(page, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / f"viewer-{name}.png"), full_page=True)


def mlflow_truth() -> tuple[int, str, str, dict[str, float]]:
    """What MLflow holds for 'sea': its champion, and the last run's decision, file and metrics."""
    from mlflow import MlflowClient

    from calmops.core.settings import get_settings

    client = MlflowClient(get_settings().mlflow_tracking_uri)
    exp = client.get_experiment_by_name("calmops/sea")
    last = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    champion = int(client.get_registered_model("calmops.sea").aliases["champion"])
    return champion, last.data.tags["calmops.decision"], last.info.run_name, last.data.metrics


def test_every_page_renders_in_chromium_and_shows_mlflow_numbers(viewer, browser):
    champion, decision, last_file, last = mlflow_truth()
    assert (champion, decision) == (2, "retrain_promoted")
    page = browser.new_page(viewport=VIEWPORT)
    try:
        page.goto(f"{viewer}/", wait_until="domcontentloaded")
        settle(page)
        assert_no_exception(page)
        assert "CalmOps pipelines" in page.inner_text("body")
        assert metric(page, "Pipelines") == "3"
        page.locator('[data-testid="stDataFrame"]').nth(1).wait_for(timeout=60_000)  # tables may render late
        assert page.locator('[data-testid="stDataFrame"]').count() == 2  # the pipelines and the latest runs
        assert page.get_by_role("link", name="Prefect UI").count() == 1  # sidebar link to the Prefect UI
        shoot(page, "overview")

        page.goto(f"{viewer}/pipeline?pipeline=sea", wait_until="domcontentloaded")
        settle(page)
        assert_no_exception(page)
        assert metric(page, "Champion") == f"v{champion}"
        assert metric(page, "Last decision") == decision
        assert metric(page, "Breaker") == "closed"
        assert last_file in page.inner_text("body")
        for tab in PIPELINE_TABS:
            page.get_by_role("tab", name=tab).click()
            settle(page, 30)
            assert_no_exception(page)
            slug = tab.lower().replace(" & ", "-").replace(" ", "-")
            shoot(page, f"pipeline-{slug}")
        # the last file changed the concept (θ 8 → 4): its estimate without labels stayed high while the
        # realized accuracy fell, and the performance chart draws both
        assert last["estimated_accuracy"] - last["champion_accuracy"] > 0.15, last
        page.get_by_role("tab", name="Performance").click()
        settle(page, 30)
        legend = set(page.locator(".legendtext").all_text_contents())
        assert {"champion accuracy", "estimated accuracy", "estimate band (95 %)"} <= legend, legend
        page.get_by_role("tab", name="Spec").click()
        assert "DecisionTreeClassifier" in page.inner_text("body")
        page.get_by_role("tab", name="Drift").click()
        settle(page, 30)
        assert page.get_by_role("button", name="Drift report (HTML, opens offline)").count() == 1

        for path, name, text in (("blocks", "blocks", "Between-block drift matrix"),
                                 ("ipip", "ipip", "IPIP ensembles"), ("simulator", "simulator", "Preview")):
            page.goto(f"{viewer}/{path}", wait_until="domcontentloaded")
            settle(page)
            page.get_by_text(text).first.wait_for(timeout=90_000)  # a slow import may outlast the settle
            assert_no_exception(page)
            assert text in page.inner_text("body")
            shoot(page, name)
    finally:
        page.close()


def test_overview_link_opens_the_pipeline_page_and_nothing_is_asked_of_another_host(viewer, browser):
    """The viewer works offline and tells no other host who opened it: every request the browser makes (the
    page, its scripts and fonts, the tab's icon, the charts) goes to the viewer itself. The tab's icon was a
    Material icon, which the browser fetched from fonts.gstatic.com."""
    from urllib.parse import urlsplit

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    try:
        page.goto(f"{viewer}/", wait_until="domcontentloaded")
        settle(page)
        page.get_by_role("link", name="Pipeline").first.click()  # the navigation in the sidebar
        settle(page)
        assert_no_exception(page)
        assert metric(page, "Champion").startswith("v") or metric(page, "Champion") == "—"
        page.get_by_role("tab", name="Performance").click()
        settle(page, 30)
        icon = page.locator('link[rel~="icon"]').first.get_attribute("href") or ""
    finally:
        page.close()
    http = [url for url in asked if url.startswith(("http:", "https:"))]
    assert http and {urlsplit(url).hostname for url in http} == {urlsplit(viewer).hostname}, \
        sorted({url for url in http if urlsplit(url).hostname != urlsplit(viewer).hostname})
    assert "gstatic" not in icon and not icon.startswith("https:"), icon


@pytest.fixture
def beacon():
    """A local HTTP server that records every request: a rendered image would hit it."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], hits
    finally:
        server.shutdown()
        server.server_close()


def test_names_from_data_are_shown_as_text_not_rendered(viewer, browser, beacon):
    """A refused file whose column name is a markdown image: the viewer shows the characters, fetches nothing."""
    from tests.conftest import sea_frame, write_csv
    from tests.flows.helpers import incoming, run

    port, hits = beacon
    column = f"![b](http://127.0.0.1:{port}/)"  # short and first: a reason quotes 30 characters of each name
    frame = sea_frame(50, 8, seed=9).drop(columns=["y"]).rename(columns={"x3": column})
    frame = frame[[column, *[c for c in frame.columns if c != column]]]
    path = write_csv(frame, incoming("sea"), "odd.csv")
    with ThreadPoolExecutor(1) as pool:  # outside the thread of playwright's event loop
        outcome = pool.submit(run, "sea", path).result()
    assert outcome["decision"] == "rejected_input" and column in outcome["reason"]
    page = browser.new_page(viewport={"width": 1440, "height": 1400})
    try:
        deadline = time.time() + 90
        while True:  # the viewer re-reads MLflow's runs every few seconds
            page.goto(f"{viewer}/pipeline?pipeline=sea", wait_until="domcontentloaded")
            settle(page)
            if column in page.inner_text("body") or time.time() > deadline:
                break
            time.sleep(3)
        assert column in page.inner_text("body"), page.inner_text("body")[:3000]
        page.goto(f"{viewer}/", wait_until="domcontentloaded")
        settle(page)
        time.sleep(2)
        assert hits == [], f"the browser fetched {hits}"
        assert page.locator(f'img[src*="127.0.0.1:{port}"]').count() == 0
    finally:
        page.close()


def test_the_drift_report_page_opens_offline_and_shows_every_feature(seeded, browser, tmp_path):
    """`calmops report` writes f3.csv's page from what MLflow recorded; Chromium opens it with every network
    request refused: nothing is fetched, and each feature of the file has its table row and its two-sided bars."""
    import sys

    from calmops.core import registry

    out = tmp_path / "sea-f3.html"
    env = dict(os.environ, CALMOPS_HOME=str(seeded), PYTHONPATH=str(ROOT))
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([str(Path(sys.executable).with_name("calmops")), "report", "sea", "f3.csv", "-o", str(out)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "retrain_promoted" in done.stdout and out.exists()
    recorded = registry.recorded_verdict("sea", "f3.csv")[1]["data"]
    features = sorted({f["feature"] for f in recorded["features"]})
    assert features == ["x1", "x2", "x3"]  # the SEA file's features (y is the target)
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    asked: list[str] = []

    def only_the_file(route):
        asked.append(route.request.url)
        route.continue_() if route.request.url.startswith("file://") else route.abort()

    try:
        page.route("**/*", only_the_file)
        page.goto(out.as_uri(), wait_until="load")
        assert [u for u in asked if not u.startswith("file://")] == []
        assert "retrain_promoted" in page.inner_text("body")
        rows = page.locator("table tbody tr").filter(has=page.locator("svg"))
        assert sorted(rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())) == features
        for i in range(rows.count()):
            bars = rows.nth(i).locator("svg rect")
            assert bars.count() == 2 * len(recorded["distributions"][rows.nth(i).locator("td").first.inner_text()]["bins"])
            assert rows.nth(i).locator("svg").bounding_box()["height"] > 0
        shoot(page, "drift-report")
    finally:
        page.close()
