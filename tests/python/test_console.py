"""The console in a real headless Chromium (Debian's chromium and chromium-driver, driven
by Selenium): every page loads, light and dark, with no JavaScript error and no request to
another origin; the overview's numbers are the usage API's; a key created in the page
works and its secret is never shown again; user input renders as text. Screenshots of
every page go to target/console-screenshots/."""

import json
import os
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import DEMO_KEY

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ADMIN = "sk-modelgate-demo-admin"
PAGES = ["overview", "usage", "keys", "providers", "logs", "config"]
SHOTS = Path(__file__).resolve().parents[2] / os.environ.get("CARGO_TARGET_DIR", "target") / "console-screenshots"


def _binary(name):
    path = shutil.which(name)
    if path is None:
        if os.environ.get("MODELGATE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{name} is not installed (Debian: chromium, chromium-driver)")
        pytest.skip(f"{name} is not installed")
    return path


@pytest.fixture(scope="module")
def browser():
    chromium, driver_bin = _binary("chromium"), _binary("chromedriver")
    profile = tempfile.mkdtemp(prefix="modelgate-console-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,900",
    ]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_bin), options=opts)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _api(gateway, method, path, body=None, key=ADMIN):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(gateway["base"] + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {key}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read() or b"null")


def _chat(gateway, key):
    return _api(gateway, "POST", "/v1/chat/completions",
                {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}, key=key)


def _until(driver, condition, seconds=10):
    # Pages are redrawn whole: an element read mid-redraw is stale, so try again.
    return WebDriverWait(driver, seconds, ignored_exceptions=[StaleElementReferenceException]).until(condition)


def _wait_page(driver, page):
    def drawn(d):
        now = d.find_element(By.ID, "main").get_attribute("data-page")
        if now == "error":
            raise AssertionError(f"page {page} failed: {d.find_element(By.ID, 'main').text}")
        return now == page
    WebDriverWait(driver, 15).until(drawn)


def _sign_in(driver, gateway):
    driver.get(gateway["base"] + "/console/")
    driver.execute_script("sessionStorage.clear()")  # signed out: the secret lives only there
    driver.refresh()
    secret = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.CSS_SELECTOR, "input[type=password]"))
    WebDriverWait(driver, 5).until(lambda d: secret.is_displayed())
    secret.send_keys(ADMIN)
    driver.find_element(By.XPATH, "//button[normalize-space()='Sign in']").click()
    _wait_page(driver, "overview")


def _go(driver, page):
    driver.find_element(By.CSS_SELECTOR, f"#nav a[data-page='{page}']").click()
    _wait_page(driver, page)


def _js_errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _foreign_requests(driver, base):
    out = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") != "Network.requestWillBeSent":
            continue
        url = msg["params"]["request"]["url"]
        # The network only: chrome:// pages are the browser's own (its new-tab page).
        if url.split(":", 1)[0] in ("http", "https", "ws", "wss") and not url.startswith(base + "/"):
            out.append(url)
    return out


def _dark(driver, on):
    value = "dark" if on else "light"
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": value}]})


def test_the_console_needs_a_management_secret(gateway):
    with urllib.request.urlopen(gateway["base"] + "/console/", timeout=5) as r:
        assert r.status == 200
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert r.headers["x-frame-options"] == "DENY"


def test_every_page_loads_in_light_and_dark_without_errors_or_other_origins(browser, gateway):
    assert _chat(gateway, DEMO_KEY)[0] == 200  # something to show
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.get_log("browser"), browser.get_log("performance")  # start clean
    _sign_in(browser, gateway)
    for dark in (False, True):
        _dark(browser, dark)
        for page in PAGES:
            _go(browser, page)
            time.sleep(0.2)  # let charts and fonts settle before the picture
            browser.save_screenshot(str(SHOTS / f"{page}-{'dark' if dark else 'light'}.png"))
    # A phone's width: the overview and the keys still fit.
    browser.set_window_size(390, 844)
    for page in ("overview", "keys"):
        _go(browser, page)
        browser.save_screenshot(str(SHOTS / f"{page}-phone.png"))
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 400, f"{page} scrolls sideways on a phone ({width}px)"
    browser.set_window_size(1280, 900)
    _dark(browser, False)
    assert _js_errors(browser) == []
    assert _foreign_requests(browser, gateway["base"]) == []
    for page in PAGES:
        for theme in ("light", "dark"):
            assert (SHOTS / f"{page}-{theme}.png").stat().st_size > 5000


def test_the_overview_states_what_the_usage_api_says(browser, gateway):
    for _ in range(3):
        assert _chat(gateway, DEMO_KEY)[0] == 200
    _sign_in(browser, gateway)
    _go(browser, "usage")
    _go(browser, "overview")  # drawn now, after the requests above
    today = time.strftime("%Y-%m-%d", time.gmtime())
    _, usage = _api(gateway, "GET", f"/v0/management/usage?from={today}&to={today}&group_by=")
    requests = usage["totals"]["requests"]
    assert requests >= 3
    summary = browser.find_element(By.ID, "today-summary").text
    assert f"{requests:,} requests today" in summary, summary
    assert browser.find_element(By.ID, "today-requests").text == f"{requests:,}"
    cost = browser.find_element(By.ID, "today-cost").text
    spent = usage["totals"]["cost_usd"]
    if 0 < spent < 0.0001:
        assert cost == "<$0.0001", cost
    else:
        assert cost.startswith("$") and abs(float(cost[1:]) - spent) < 0.0001, cost


def test_a_key_created_in_the_page_works_and_its_secret_is_shown_once(browser, gateway):
    _sign_in(browser, gateway)
    _go(browser, "keys")
    browser.find_element(By.CSS_SELECTOR, "#create-key input[name=name]").send_keys("made-in-console")
    browser.find_element(By.XPATH, "//form[@id='create-key']//button[normalize-space()='Create']").click()
    secret = _until(browser, lambda d: d.find_element(By.ID, "new-secret").get_attribute("value"))
    assert secret.startswith("sk-mg-") and len(secret) == 49
    assert _chat(gateway, secret)[0] == 200
    row = browser.find_element(By.CSS_SELECTOR, "tr[data-key='made-in-console']")
    assert "made-in-console" in row.text and secret not in row.text
    # Away and back, and a reload: the secret is nowhere.
    _go(browser, "overview")
    _go(browser, "keys")
    assert secret not in browser.page_source
    browser.refresh()
    _wait_page(browser, "keys")
    assert secret not in browser.page_source
    assert browser.find_elements(By.ID, "new-secret") == []
    # Edit: the team set through the JSON editor shows in the row.
    row = browser.find_element(By.CSS_SELECTOR, "tr[data-key='made-in-console']")
    row.find_element(By.XPATH, ".//button[normalize-space()='Edit']").click()
    editor = browser.find_element(By.ID, "edit-json")
    browser.execute_script("arguments[0].value = arguments[1]", editor, '{"team": "console-team"}')
    browser.find_element(By.ID, "dialog-ok").click()
    _until(browser, 
        lambda d: "console-team" in d.find_element(By.CSS_SELECTOR, "tr[data-key='made-in-console']").text)
    # Rotate: a new secret, shown once; the old one still works during the grace period.
    row = browser.find_element(By.CSS_SELECTOR, "tr[data-key='made-in-console']")
    row.find_element(By.XPATH, ".//button[normalize-space()='Rotate']").click()
    browser.find_element(By.ID, "dialog-ok").click()
    rotated = _until(browser, lambda d: d.find_element(By.ID, "new-secret").get_attribute("value"))
    assert rotated.startswith("sk-mg-") and rotated != secret
    assert _chat(gateway, rotated)[0] == 200
    assert _chat(gateway, secret)[0] == 200, "the old secret works for the grace period"
    _go(browser, "overview")
    _go(browser, "keys")
    assert rotated not in browser.page_source
    # Disable it from the page: the key stops working.
    row = browser.find_element(By.CSS_SELECTOR, "tr[data-key='made-in-console']")
    row.find_element(By.XPATH, ".//button[normalize-space()='Disable']").click()
    _until(browser, 
        lambda d: "disabled" in d.find_element(By.CSS_SELECTOR, "tr[data-key='made-in-console']").text)
    for old in (secret, rotated):
        with pytest.raises(urllib.error.HTTPError) as err:
            _chat(gateway, old)
        assert err.value.code == 401
    # Delete, confirmed in the dialog.
    row = browser.find_element(By.CSS_SELECTOR, "tr[data-key='made-in-console']")
    row.find_element(By.XPATH, ".//button[normalize-space()='Delete']").click()
    browser.find_element(By.ID, "dialog-ok").click()
    _until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-key='made-in-console']") == [])
    assert _js_errors(browser) == []


def test_user_input_renders_as_text(browser, gateway):
    payload = "<img src=x onerror=alert(1)>"
    status, _ = _api(gateway, "POST", "/v0/management/keys",
                     {"name": "xss-probe", "team": payload, "metadata": {"note": payload}})
    assert status == 201
    _sign_in(browser, gateway)
    _go(browser, "keys")
    # The name field refuses it; the API's error is shown as text too.
    browser.find_element(By.CSS_SELECTOR, "#create-key input[name=name]").send_keys(payload)
    browser.find_element(By.XPATH, "//form[@id='create-key']//button[normalize-space()='Create']").click()
    _until(browser, lambda d: d.find_element(By.ID, "create-error").text != "")
    row = browser.find_element(By.CSS_SELECTOR, "tr[data-key='xss-probe']")
    assert payload in row.text
    assert browser.find_elements(By.CSS_SELECTOR, "img[src='x']") == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text
    _api(gateway, "DELETE", "/v0/management/keys/xss-probe")


def test_config_errors_are_shown_by_line(browser, gateway):
    _sign_in(browser, gateway)
    _go(browser, "config")
    assert '"<redacted>"' in browser.find_element(By.ID, "config-running").text
    area = browser.find_element(By.ID, "config-yaml")
    area.send_keys("providers:\n  p:\n    kind: openai\n    base_url: http://127.0.0.1:9\n    colour: red\n")
    browser.find_element(By.ID, "config-validate").click()
    errors = _until(browser, lambda d: d.find_element(By.ID, "config-errors"))
    assert "line 5" in errors.text and "colour" in errors.text, errors.text
    assert browser.find_element(By.CSS_SELECTOR, "pre.gutter span.bad").text.strip() == "5"
