"""The audit report in a real browser: every image decodes and nothing overflows, at desktop and phone width.

How: a headless Chromium (Debian's ``chromium`` package; ``.ci/run`` installs it) driven over the
DevTools protocol on ``--remote-debugging-pipe``: Chromium reads JSON commands from fd 3 and writes
replies and events to fd 4, each message ending in a NUL byte, so the standard library (``subprocess``,
``os.pipe``, ``json``) is the whole client; no websocket, no new Python dependency. One browser serves
every report and width, which keeps the test quick. Per report and width we

* set the viewport with ``Emulation.setDeviceMetricsOverride`` (desktop 1280 x 800; phone 390 x 844
  with ``mobile: true``, so the page is laid out as a phone lays it out: without a viewport meta tag a
  phone uses a 980 px wide layout, zoomed out and unreadable, which the check catches),
* load the file and wait for its ``load`` lifecycle event (matched by loader id),
* evaluate one script (``_CHECKS``) that awaits every ``<img>``'s decode, then reports each image's
  natural size, ``scrollWidth`` against ``innerWidth``, and every element whose box leaves the viewport
  horizontally (an element inside a box that scrolls or clips horizontally, such as a wide table that
  scrolls on its own, is contained, not overflowing),
* require that no table cell holds a raw None/NaN and that the verdict block starts on the first
  screen (its top above the viewport's height),
* keep screenshots as test artefacts: ``<report>-<width>.png`` is the first screen (what a person sees
  above the fold), ``<report>-<width>-full.png`` the whole page; ``browser-checks.json`` holds what the
  script measured. They go to ``$LATENTFIELD_ARTIFACTS`` or ``test-artifacts/report-browser/``.

The reports are real audits: ``demo:memorize`` and ``demo:generalize`` (64 seeds) and TAEF2 at 32 px
(8 seeds, 50 steps: a run where no seed converges). The test skips only where no Chromium can be found
(set ``LATENTFIELD_CHROMIUM`` to a binary to use another); a browser that is found but does not start
is a failure.
"""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from latentfield.probe.cli import main as cli_main

from conftest import ROOT

WIDTHS = {"desktop": {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False},
          "phone": {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}}
BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
TIMEOUT_S = 30.0

# Reports to render: CLI arguments, and how many images each must at least show (figures, gallery).
REPORTS = {
    "memorize": (["demo:memorize", "--seeds", "64", "--max-steps", "400"], 3),  # slow drifters stop at 400
    "generalize": (["demo:generalize", "--seeds", "64"], 3),
    "taef2": (["{taef2}", "--image-shape", "3,32,32", "--seeds", "8", "--max-steps", "50", "--tol", "1e-5"], 8),  # no attractor: 8 decoded end points
}

_CHECKS = """(async () => {
  await Promise.all([...document.images].map(i => i.decode().catch(() => null)));
  const vw = document.documentElement.clientWidth;
  const contained = el => {
    for (let a = el.parentElement; a && a !== document.documentElement; a = a.parentElement)
      if (getComputedStyle(a).overflowX !== 'visible') return true;
    return false;
  };
  const name = el => el.tagName.toLowerCase() + (el.className ? '.' + el.className : '')
    + ' "' + (el.textContent || el.title || '').trim().slice(0, 40) + '"';
  const wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && (r.right > vw + 0.5 || r.left < -0.5) && !contained(el))
      wide.push({element: name(el), left: Math.round(r.left), right: Math.round(r.right)});
  }
  const cells = [...document.querySelectorAll('td, th')].map(c => c.textContent.trim());
  return {
    innerWidth: window.innerWidth, clientWidth: vw, scrollWidth: document.documentElement.scrollWidth,
    scrollHeight: document.documentElement.scrollHeight,
    images: [...document.images].map(i => ({title: i.title, complete: i.complete, naturalWidth: i.naturalWidth,
                                            naturalHeight: i.naturalHeight, shownWidth: i.width, shownHeight: i.height})),
    wide: wide,
    suspectCells: cells.filter(t => /\\b(None|NaN|nan|null|undefined)\\b/.test(t)),
    fontSizePx: parseFloat(getComputedStyle(document.body).fontSize),
    innerHeight: window.innerHeight,
    verdictTop: (v => v ? v.getBoundingClientRect().top + window.scrollY : null)(document.querySelector('.verdict')),
  };
})()"""


def find_chromium() -> str | None:
    explicit = os.environ.get("LATENTFIELD_CHROMIUM")
    if explicit:
        return explicit
    return next((path for b in BINARIES if (path := shutil.which(b))), None)


class Chromium:
    """Headless Chromium spoken to over ``--remote-debugging-pipe`` (NUL-separated JSON on fds 3 and 4)."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # The child must see the pipes as fds 3 and 4; bash moves them there before exec (dash cannot
        # redirect fds above 9, and preexec_fn is unsafe once torch has started threads).
        cmd = ["bash", "-c", f'exec "$0" "$@" 3<&{to_child_r} 4>&{from_child_w}', binary, "--headless",
               "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars", "--no-first-run",
               "--no-default-browser-check", "--mute-audio", "--remote-debugging-pipe",
               f"--user-data-dir={profile}", "about:blank"]
        self.proc = subprocess.Popen(cmd, pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf, self._events, self._next_id = b"", [], 0
        try:
            self.call("Browser.getVersion")
        except Exception as e:
            self.close()
            err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.stderr else ""
            raise RuntimeError(f"{binary} did not start: {e}\n{err}") from None

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params} | ({"sessionId": session} if session else {})
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_event(self, method: str, session: str, **params: Any) -> dict[str, Any]:
        """The first event ``method`` of ``session`` whose params include ``params``."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            for i, e in enumerate(self._events):
                if e.get("method") == method and e.get("sessionId") == session and \
                        params.items() <= e.get("params", {}).items():
                    return self._events.pop(i)
            self._events.append(self._read_message(deadline))

    def render(self, url: str, metrics: dict[str, Any], shots: Path) -> dict[str, Any]:
        """Load ``url`` in a fresh tab with ``metrics``; run ``_CHECKS``; write ``shots``.png (first
        screen) and ``shots``-full.png (whole page). Returns the checks' results."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        try:
            self.call("Page.enable", session)
            self.call("Page.setLifecycleEventsEnabled", session, enabled=True)
            self.call("Emulation.setDeviceMetricsOverride", session, **metrics)
            loader = self.call("Page.navigate", session, url=url)["loaderId"]
            self.wait_event("Page.lifecycleEvent", session, name="load", loaderId=loader)  # this page's, not about:blank's
            res = self.call("Runtime.evaluate", session, expression=_CHECKS, awaitPromise=True, returnByValue=True)
            if "exceptionDetails" in res:
                raise RuntimeError(f"check script failed: {res['exceptionDetails']}")
            checks = res["result"]["value"]
            shot = self.call("Page.captureScreenshot", session, format="png")
            shots.with_suffix(".png").write_bytes(base64.b64decode(shot["data"]))
            full = self.call("Page.captureScreenshot", session, format="png", captureBeyondViewport=True,
                             clip={"x": 0, "y": 0, "width": checks["clientWidth"], "height": checks["scrollHeight"],
                                   "scale": 1})
            shots.with_name(shots.name + "-full.png").write_bytes(base64.b64decode(full["data"]))
            return checks
        finally:
            self.call("Target.closeTarget", targetId=target)
            self._events = [e for e in self._events if e.get("sessionId") != session]

    def close(self) -> None:
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def artifacts() -> Path:
    out = Path(os.environ.get("LATENTFIELD_ARTIFACTS", ROOT / "test-artifacts")) / "report-browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set LATENTFIELD_CHROMIUM to a browser binary)")
    chrome = Chromium(binary, tmp_path_factory.mktemp("chromium-profile"))
    yield chrome
    chrome.close()


@pytest.mark.parametrize("name", list(REPORTS))
def test_report_renders_in_a_browser(name, browser, artifacts, tmp_path, request):
    args, min_images = REPORTS[name]
    if "{taef2}" in args:
        args = [a.replace("{taef2}", str(request.getfixturevalue("taef2_dir"))) for a in args]
    assert cli_main(["audit", *args, "--quiet", "--out", str(tmp_path / name)]) == 0
    page = (tmp_path / name / "report.html").resolve().as_uri()
    results = {}
    for width, metrics in WIDTHS.items():
        results[width] = browser.render(page, metrics, artifacts / f"{name}-{width}")
    (artifacts / f"{name}-checks.json").write_text(json.dumps(results, indent=1))

    for width, r in results.items():
        where = f"{name} at {width} width ({WIDTHS[width]['width']} px)"
        # The layout viewport is the device's width: on a phone the page does not fall back to 980 px.
        assert r["innerWidth"] == WIDTHS[width]["width"], f"{where}: laid out {r['innerWidth']} px wide"
        assert len(r["images"]) >= min_images, f"{where}: {len(r['images'])} images, expected >= {min_images}"
        broken = [i["title"] or f"image {k}" for k, i in enumerate(r["images"])
                  if not (i["complete"] and i["naturalWidth"] > 0)]
        assert not broken, f"{where}: images that do not decode: {broken}"
        assert r["scrollWidth"] <= r["innerWidth"], f"{where}: page scrolls sideways ({r['scrollWidth']} px)"
        assert not r["wide"], f"{where}: elements wider than the viewport: {r['wide'][:5]}"
        assert not r["suspectCells"], f"{where}: table cells with raw None/NaN: {r['suspectCells'][:5]}"
        # The verdict is what a person reads first: it starts on the first screen.
        assert r["verdictTop"] is not None, f"{where}: no verdict block"
        assert r["verdictTop"] < r["innerHeight"], f"{where}: verdict starts at {r['verdictTop']} px, below the fold"
        for kind in ("png", "full.png"):
            shot = artifacts / (f"{name}-{width}.png" if kind == "png" else f"{name}-{width}-full.png")
            assert shot.stat().st_size > 1000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
