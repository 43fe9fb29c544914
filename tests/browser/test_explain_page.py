"""The explain page in a real browser: Debian's chromium driven by selenium, the page opened from disk.

Skipped, with the reason, where chromium, chromedriver or selenium is missing (.ci/run installs them).
"""
import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from glassformer.cli.explain import main
from glassformer.explain.island import decode, read_island

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000"]
ROMEO = "ROMEO: But soft, what light through yonder window breaks? It is the east, and Juliet is the sun."

if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[test]')")
from selenium.webdriver import ActionChains  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """{name: path} of the digits page and the char LM's 64-token page."""
    folder = tmp_path_factory.mktemp("pages")
    made = {"digits": (ROOT / "checkpoints" / "digits.npz", []),
            "char": (ROOT / "checkpoints" / "shakespeare_char.npz", ["--text", ROMEO[:65]])}
    for name, (source, args) in made.items():
        assert main([str(source), *args, "--out", str(folder / f"{name}.html")]) == 0
    return {name: folder / f"{name}.html" for name in made}


@pytest.fixture(scope="module")
def browser():
    """One headless chromium for the module, with a new empty profile and its logs on."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="glassformer-chromium-")     # a new, empty profile
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, path, stage=None):
    """Load the page from file:// (optionally at #stage); the logs emptied first."""
    driver.get("about:blank")
    driver.get_log("browser"), driver.get_log("performance")
    driver.get(path.as_uri() + (f"#{stage}" if stage else ""))
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1"


def current(driver):
    """The id of the stage the page shows."""
    return driver.find_element(By.TAG_NAME, "body").get_attribute("data-stage")


def requests(driver):
    """Every URL the page asked the network stack for (performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_the_page_opens_from_file_with_no_console_error_no_request_and_loads_in_under_3_s(browser, pages):
    open_page(browser, pages["char"])
    assert browser.get_log("browser") == []                 # no error, no CSP violation, no warning
    assert all(u.startswith(("file://", "data:")) for u in requests(browser)), requests(browser)
    ms = browser.execute_script("return performance.getEntriesByType('navigation')[0].duration")
    assert 0 < ms < 3000, ms
    csp = browser.find_element(By.CSS_SELECTOR, 'meta[http-equiv="Content-Security-Policy"]')
    assert "default-src 'none'" in csp.get_attribute("content")
    blocked = browser.execute_async_script(             # the policy holds: a fetch is refused
        "var done = arguments[0]; fetch('https://example.com/x').then(function(){ done('sent'); },"
        " function(){ done('blocked'); });")
    assert blocked == "blocked"
    assert any("Content Security Policy" in e["message"] for e in browser.get_log("browser"))


def test_every_stage_is_reachable_with_next_in_order_and_the_arrow_keys_and_hash_move(browser, pages):
    island = read_island(pages["digits"].read_text(encoding="utf-8"))
    ids = [s["id"] for s in island["stages"]]
    open_page(browser, pages["digits"])
    seen = [current(browser)]
    button = browser.find_element(By.ID, "next")
    for _ in ids[1:]:
        button.click()
        seen.append(current(browser))
    assert seen == ids
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.ARROW_LEFT)
    assert current(browser) == ids[-2]
    body.send_keys(Keys.ARROW_RIGHT)
    assert current(browser) == ids[-1]
    open_page(browser, pages["digits"], "block-1-softmax")
    assert current(browser) == "block-1-softmax"
    assert browser.get_log("browser") == []


def hover(driver, canvas, r, c):
    """Move the mouse over cell (r, c) of a heatmap: the tooltip element."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    mx, my, cs = (int(canvas.get_attribute(a)) for a in ("data-mx", "data-my", "data-cs"))
    size = canvas.rect
    x = 1 + mx + c * cs + cs // 2 - size["width"] / 2          # selenium offsets are from the centre
    y = 1 + my + r * cs + cs // 2 - size["height"] / 2
    ActionChains(driver).move_to_element_with_offset(canvas, int(x), int(y)).perform()
    return driver.find_element(By.ID, "tip")


def test_hovering_an_attention_map_cell_shows_the_value_the_island_stores(browser, pages):
    island = read_island(pages["char"].read_text(encoding="utf-8"))
    weights = decode(next(s for s in island["stages"] if s["id"] == "block-0-softmax")
                     ["tensors"]["attention weights"])      # (H, T, T)
    open_page(browser, pages["char"], "block-0-softmax")
    canvas = browser.find_elements(By.CSS_SELECTOR, 'canvas[data-tensor="attention weights"]')[1]  # head 1
    for r, c in [(40, 7), (5, 5), (63, 0)]:
        tip = hover(browser, canvas, r, c)
        assert json.loads(tip.get_attribute("data-index")) == [1, r, c]
        assert float(tip.get_attribute("data-value")) == float(weights[1, r, c])
        assert "attention weights[1, " in tip.text


@pytest.mark.parametrize("sid, name, form", [
    ("update-tok_emb-W", "m (first moment)", "scale"), ("update-tok_emb-W", "v (second moment)", "scale_square"),
    ("block-0-residual-1", "r = x + attention(x)", "add"), ("block-1-mask", "scores + mask", "mask"),
    ("block-1-ln1", "input x", "ref")])
def test_a_tensor_stored_once_or_derived_shows_the_model_s_numbers_on_hover(browser, pages, sid, name, form):
    island = read_island(pages["char"].read_text(encoding="utf-8"))
    entry = next(s for s in island["stages"] if s["id"] == sid)["tensors"][name]
    assert entry.get("op", "ref" if "ref" in entry else "b64") == form
    numbers = decode(entry, island)                         # (rows, cols) or (H, T, T)
    open_page(browser, pages["char"], sid)
    canvas = browser.find_elements(By.CSS_SELECTOR, f'canvas[data-tensor="{name}"]')[0]
    assert name in browser.find_element(By.ID, "stage").text and "stored" in browser.find_element(
        By.ID, "stage").text                                # the page says where the numbers come from
    m = numbers.reshape(-1, *numbers.shape[-2:])[0][:, :64]  # the first map's columns in view
    cells = [np.unravel_index(np.argmax(np.abs(np.where(m < -1e30, 0, m))), m.shape), (0, m.shape[1] - 1)]
    for r, c in cells:
        tip = hover(browser, canvas, int(r), int(c))
        lead = [0] if numbers.ndim == 3 else []
        assert json.loads(tip.get_attribute("data-index")) == lead + [int(r), int(c)]
        assert float(tip.get_attribute("data-value")) == float(m[r, c]), (r, c)
    assert browser.get_log("browser") == []


def test_a_screenshot_is_not_blank(browser, pages):
    from matplotlib.image import imread
    open_page(browser, pages["char"], "block-0-scores")
    pixels = imread(io.BytesIO(browser.get_screenshot_as_png()), format="png")
    colours = np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200, len(colours)
