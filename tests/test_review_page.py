"""The review page in a real browser: headless Chromium (Debian's chromium and chromium-driver, which
scripts/setup.sh installs) driven by Selenium answers samples with the keyboard; the page is closed
mid-way and the server stopped, a new session resumes from review.csv, and every answer is in the
file with the estimate updated."""
from __future__ import annotations

import os
import shutil
import threading

import pandas as pd
import pytest

from labelaudit.audit.read import load_audit
from labelaudit.review.session import REVIEW_CSV, ReviewSession, class_keys, serve

pytestmark = pytest.mark.slow


def _missing(what: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not installed; CI must run scripts/setup.sh (it installs it)")
    pytest.skip(f"{what} is not installed (scripts/setup.sh installs it)")


@pytest.fixture
def browser(tmp_path):
    """A function that opens a fresh headless Chromium; every one opened is closed at the end."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium")
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    driver_exe = shutil.which("chromedriver")
    if exe is None or driver_exe is None:
        _missing("chromium" if exe is None else "chromium-driver")
    opened = []

    def open_browser():
        options = webdriver.ChromeOptions()
        options.binary_location = exe
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--user-data-dir={tmp_path / f'profile{len(opened)}'}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(executable_path=driver_exe), options=options)
        opened.append(driver)
        return driver

    yield open_browser
    for d in opened:
        try:
            d.quit()
        except Exception:
            pass


def _start(audit_dir):
    session = ReviewSession(load_audit(audit_dir), n=30, seed=0)
    server, url = serve(session)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return session, server, url


def _page(driver, url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 20).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    return driver


def _answer(driver, truth_of, keys, n, expected):
    """Answer ``n`` samples as a careful person would: Enter when the given label is right, else the
    true class's key. Waits for each answer to be counted."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    for _ in range(n):
        before = len(expected)
        sid = driver.find_element(By.ID, "sid").text
        given = driver.find_element(By.ID, "given").text
        true = truth_of[sid]
        ActionChains(driver).send_keys(Keys.ENTER if true == given else keys[true]).perform()
        expected[sid] = true
        WebDriverWait(driver, 10).until(
            lambda d: d.find_element(By.ID, "progress").text.startswith(f"{before + 1} /"))


def test_answers_with_the_keyboard_survive_closing_the_page(reviewed, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    audit_dir, images, truth = reviewed
    samples = load_audit(audit_dir).samples
    truth_of = {str(sid): truth[p] for sid, p in zip(samples["sample_id"], samples["path"].astype(str))}
    session, server, url = _start(audit_dir)
    keys = class_keys(session.classes)
    driver = _page(browser(), url)
    assert driver.find_element(By.ID, "progress").text == "0 / 30 answered"
    assert driver.execute_script("return document.getElementById('image').naturalWidth") > 0
    expected: dict[str, str] = {}
    _answer(driver, truth_of, keys, 6, expected)
    # Backspace takes the last answer back; the same sample comes up again and is answered again
    last = driver.find_element(By.ID, "sid").text
    ActionChains(driver).send_keys(Keys.BACKSPACE).perform()
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "progress").text.startswith("5 /"))
    assert driver.find_element(By.ID, "sid").text != last
    redo = driver.find_element(By.ID, "sid").text
    assert redo in expected
    del expected[redo]
    _answer(driver, truth_of, keys, 1, expected)
    saved = pd.read_csv(audit_dir / REVIEW_CSV, dtype=str, keep_default_na=False)
    assert dict(zip(saved.loc[saved["label"] != "", "sample_id"], saved.loc[saved["label"] != "", "label"])) == expected

    driver.quit()  # the tab closes mid-way, and the process stops
    server.shutdown()
    server.server_close()

    session, server, url = _start(audit_dir)  # a second `labelaudit review` resumes from review.csv
    try:
        assert session.resumed and session.n_answered == 6
        driver = _page(browser(), url)
        assert driver.find_element(By.ID, "progress").text == "6 / 30 answered"
        first_estimate = driver.find_element(By.ID, "estimate").text
        _answer(driver, truth_of, keys, 4, expected)
        saved = pd.read_csv(audit_dir / REVIEW_CSV, dtype=str, keep_default_na=False)
        answered = saved[saved["label"] != ""]
        assert len(answered) == 10 and dict(zip(answered["sample_id"], answered["label"])) == expected
        e = session.estimate()
        shown = driver.find_element(By.ID, "estimate").text
        assert shown != first_estimate and f"{100 * e['value']:.1f}%" in shown and "10 answers" in shown
        # the page's button applies the answers to the audit
        driver.find_element(By.ID, "apply").click()
        WebDriverWait(driver, 20).until(lambda d: "Applied 10 answers" in d.find_element(By.ID, "message").text)
        assert load_audit(audit_dir).summary.extra["verified"]["answers"] == 10
    finally:
        server.shutdown()
        server.server_close()
