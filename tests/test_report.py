"""What a person sees: the Snakemake report of the default demo, opened in a real headless
Chromium, clicked through like a user would."""

import functools
import http.server
import json
import shutil
import threading
import zipfile

import pytest
from browser import Browser
from helpers import snakemake

pytestmark = pytest.mark.slow

SHOTS = "results/report_screenshots"  # kept in the demo's workspace to look at


def _click_text(b, text, tags="a,td"):
    """Click the first element of ``tags`` whose text is ``text``."""
    ok = b.js(f"""(() => {{ const el = Array.from(document.querySelectorAll({json.dumps(tags)}))
        .find(e => e.textContent.trim() === {json.dumps(text)}); if (el) el.click(); return Boolean(el); }})()""")
    assert ok, f"nothing to click named {text!r}"


def _open_result(b, name):
    """In a listed category, press the view (eye) button of the result ``name``."""
    b.wait_for(f"Array.from(document.querySelectorAll('td')).some(e => e.textContent.trim() === {json.dumps(name)})")
    assert b.js(f"""(() => {{ const cell = Array.from(document.querySelectorAll('td'))
        .find(e => e.textContent.trim() === {json.dumps(name)});
        const eye = cell.closest('tr').querySelector('a[iconname="eye"]'); eye.click(); return true; }})()""")


FRAME = "(document.querySelector('iframe') && document.querySelector('iframe').contentDocument)"


@pytest.fixture(scope="module")
def served_report(default_demo):
    zip_path = default_demo / "results/report.zip"
    snakemake(default_demo, "--report", "results/report.zip")
    folder = default_demo / "results/report_unzipped"
    shutil.rmtree(folder, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as z:
        names = z.namelist()
        z.extractall(folder)
    handler = functools.partial(_Quiet, directory=str(folder / "report"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/report.html", names
    server.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_report_zip_holds_the_tables_and_the_video_page(served_report):
    _, names = served_report
    base = {n.rsplit("/", 1)[-1] for n in names}
    assert {"report.html", "sweep.html", "ablation.html", "features.html", "index.html", "test.mp4", "mesh.png",
            "error_map.png", "lip_gap.png", "loss.png", "claps.png"} <= base


def test_report_in_a_browser_shows_the_sweep_table_and_plays_the_video(served_report, default_demo):
    url, _ = served_report
    shots = default_demo / SHOTS
    shots.mkdir(exist_ok=True)
    with Browser() as b:
        b.goto(url)
        b.wait_for("typeof app !== 'undefined' && document.querySelectorAll('a').length > 3")
        _click_text(b, "Sweep")
        _open_result(b, "sweep")
        b.wait_for(f"{FRAME} && {FRAME}.querySelector('#sweep-table tbody tr')")
        rows = b.js(f"Array.from({FRAME}.querySelectorAll('#sweep-table tbody tr'))"
                    ".map(r => Array.from(r.cells).map(c => c.textContent))")
        header = b.js(f"Array.from({FRAME}.querySelectorAll('#sweep-table th')).map(c => c.textContent)")
        b.screenshot(shots / "sweep.png")
        assert [r[0] for r in rows] == ["recipe", "baseline: mean offset", "baseline: ridge (phonetic+emotion)"]
        r2 = float(rows[0][header.index("test R² (offsets)")])
        assert r2 >= 0.5

        _click_text(b, "Results")
        _click_text(b, "Experiments")
        _click_text(b, "recipe")
        _open_result(b, "video")
        b.wait_for(f"{FRAME} && {FRAME}.querySelector('video')")
        b.wait_for(f"{FRAME}.querySelector('video').readyState >= 1", timeout=30)  # metadata loaded
        video = b.js(f"""(() => {{ const v = {FRAME}.querySelector('video');
            return {{duration: v.duration, width: v.videoWidth, height: v.videoHeight, error: v.error && v.error.code}}; }})()""")
        b.js(f"{FRAME}.querySelector('video').currentTime = 5")
        b.wait_for(f"!{FRAME}.querySelector('video').seeking && {FRAME}.querySelector('video').readyState >= 2")
        b.screenshot(shots / "video.png")
    assert video["error"] is None and video["width"] == 2 * 384 and video["height"] == 384, video
    assert 29 <= video["duration"] <= 31, video  # the demo's 30 s test chunk
