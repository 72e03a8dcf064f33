"""report.html renders in a real browser: headless Chromium (Debian's `chromium`, which the setup
script installs) takes a screenshot and reports which images decoded and what text is on the page."""
import html
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

WIDTH, HEIGHT = 1200, 2400
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio"]
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({images: imgs.length,
    decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length, text: document.body.innerText});
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="module")
def chromium():
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; CI must run scripts/setup.sh (it installs Debian's chromium)")
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    return exe


def _run(chromium, tmp_path, *args):
    cmd = [chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.slow
def test_report_renders_in_chromium(chromium, scanned, tmp_path):
    root, _ = scanned
    report = root / "audit" / "report.html"
    shot = tmp_path / "shot.png"
    _run(chromium, tmp_path, f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}", report.as_uri())
    with Image.open(shot) as im:
        assert im.size == (WIDTH, HEIGHT)
        pixels = np.asarray(im.convert("RGB"), dtype=np.float64)
    assert pixels.std() > 20  # not a blank page
    assert len(np.unique(pixels.reshape(-1, 3)[::7], axis=0)) > 200  # figures and thumbnails drawn

    probed = tmp_path / "probed.html"  # the same page plus a script that reports what loaded
    probed.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = _run(chromium, tmp_path, "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-500:]
    probe = json.loads(html.unescape(found.group(1)))
    assert probe["images"] == 9 and probe["decoded"] == 9  # 3 figures + 6 thumbnails, all decoded
    text = probe["text"]
    for expected in ("labelaudit report", "8.3%", "estimated noise rate", "label issues flagged",
                     "Noise-transition matrix", "Suspects: all 6", "red/blue_000.png"):
        assert expected in text, expected
