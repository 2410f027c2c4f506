"""A JupyterLab server and a headless chromium for the end-to-end notebook tests.

Both live for the whole session and are always shut down, even when a test fails or the
run is interrupted: the server runs in its own process group, which is terminated and
then killed, and every process either of them started is killed if it outlives them.

The tests are skipped, with the reason, when chromium, playwright or JupyterLab is
missing on a developer's machine; on CI (``$CI`` set) a missing piece is a failure.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from notebook_page import NOTEBOOKS, REPO, NotebookPage

SCREENSHOTS = REPO / "build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 1000}
SERVER_START_S = 90


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing() -> list[str]:
    missing = []
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"{CHROMIUM} (install it with `apt-get install chromium`)")
    for module, hint in (("playwright", "pip install -e '.[browser]'"),
                         ("jupyterlab", "pip install -e ."), ("psutil", "pip install psutil")):
        if importlib.util.find_spec(module) is None:
            missing.append(f"the Python package {module} ({hint})")
    return missing


@pytest.fixture(scope="session")
def browser_requirements():
    missing = _missing()
    if missing:
        why = "browser tests need " + " and ".join(missing)
        if _on_ci():
            pytest.fail(why + "; on CI they must run (.ci/run installs chromium)", pytrace=False)
        pytest.skip(why)


def pytest_collection_modifyitems(items):
    """Run each interaction test right after the run of its notebook, so that it reuses the
    page that run left behind instead of executing the notebook a second time."""
    here = Path(__file__).parent

    def key(item):
        if Path(str(item.fspath)).parent != here:
            return ("",)
        if Path(str(item.fspath)).name == "test_browser_unrun.py":
            return ("~",)  # last: its own tabs must not disturb a run's page and kernel
        marker = item.get_closest_marker("notebook")
        callspec = getattr(item, "callspec", None)
        name = marker.args[0] if marker else callspec.params.get("name", "") if callspec else ""
        return (name, 0 if marker is None else 1)

    inside = [i for i in items if Path(str(i.fspath)).parent == here]
    if inside:
        first = items.index(inside[0])
        rest = [i for i in items if i not in inside]
        items[:] = rest[:first] + sorted(inside, key=key) + rest[first:]


def pytest_configure(config):
    config.addinivalue_line("markers", "notebook(name): the notebook an interaction test uses")


# ------------------------------------------------------------------------- processes

def _descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _kill(procs, timeout: float = 5.0) -> None:
    """Terminate, then kill, the given psutil processes that are still running."""
    import psutil

    alive = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
            alive.append(p)
    _, alive = psutil.wait_procs(alive, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=timeout)


def _die_with_parent():
    """In the server's process, before it starts: get SIGTERM if the test process dies,
    even by SIGKILL (Linux; elsewhere the session teardown alone stops the server)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """A cancelled CI job gets SIGTERM, which would end Python without any teardown; turn
    it into KeyboardInterrupt meanwhile, so that the server and browser are shut down."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    main = threading.current_thread() is threading.main_thread()
    old = signal.getsignal(signal.SIGTERM) if main else None
    if main and old == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        if main and old == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, old)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """A JupyterLab server on 127.0.0.1 serving copies of the notebooks from ``root``.

    Authentication (token and XSRF check) is off: the server listens on the loopback
    interface only, lives for one test session and serves throwaway copies.
    """

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.root = workdir / "notebooks"
        self.log_path = workdir / "jupyterlab.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self._prepare()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _prepare(self):
        self.root.mkdir(parents=True)
        for nb in NOTEBOOKS.glob("*.ipynb"):
            shutil.copy2(nb, self.root / nb.name)
        # Every cell in the DOM (no virtual scrolling), so every figure renders and the
        # full-page screenshots show the whole notebook.
        tracker = self.workdir / "settings" / "@jupyterlab" / "notebook-extension"
        tracker.mkdir(parents=True)
        (tracker / "tracker.jupyterlab-settings").write_text(json.dumps(
            {"windowingMode": "none"}))
        # No news pop-up over the notebook.
        labconfig = self.workdir / "config" / "labconfig"
        labconfig.mkdir(parents=True)
        (labconfig / "page_config.json").write_text(json.dumps(
            {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))

    def start(self):
        env = dict(os.environ, NBKIT_MODE="quick", PYTHONUNBUFFERED="1",
                   JUPYTER_CONFIG_DIR=str(self.workdir / "config"),
                   JUPYTER_RUNTIME_DIR=str(self.workdir / "runtime"),
                   PATH=os.pathsep.join([str(Path(sys.executable).parent),
                                         os.environ.get("PATH", "")]))
        last = ""
        for _ in range(3):  # a free port can be taken before the server binds it
            self.port = _free_port()
            cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
                   "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
                   "--ServerApp.port_retries=0",
                   # loopback-only throwaway test server: no token, no password, no XSRF
                   "--IdentityProvider.token=", "--ServerApp.password=",
                   "--ServerApp.disable_check_xsrf=True",
                   f"--ServerApp.root_dir={self.root}",
                   f"--LabApp.user_settings_dir={self.workdir / 'settings'}",
                   f"--LabApp.workspaces_dir={self.workdir / 'workspaces'}",
                   "--LabApp.news_url=", "--LabApp.check_for_updates_class="
                   "jupyterlab.NeverCheckForUpdate"]
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=env, stdout=log,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True,
                                             preexec_fn=_die_with_parent)
            deadline = time.monotonic() + SERVER_START_S
            while time.monotonic() < deadline and self.proc.poll() is None:
                with contextlib.suppress(OSError, ValueError):
                    self.api("GET", "/api/status")
                    return self
                time.sleep(0.25)
            last = self.log_tail()
            self.stop()
        raise RuntimeError(f"JupyterLab did not start; its log ends with:\n{last}")

    def api(self, method: str, path: str, timeout: float = 10.0):
        req = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def kernels(self) -> list[dict]:
        """The running kernels. The server can fail to describe a kernel that is still
        starting (HTTP 500), so a failed request is retried."""
        for attempt in range(20):
            try:
                return self.api("GET", "/api/kernels")
            except urllib.error.HTTPError:
                if attempt == 19:
                    raise
                time.sleep(0.25)

    def shutdown_kernels(self, wait: bool = True) -> threading.Thread | None:
        """End every session and kernel there is now, so that the next notebook starts on
        a fresh kernel with both CPU cores to itself. With ``wait=False`` the kernels are
        shut down in the background (the next page can load meanwhile)."""
        try:
            paths = [f"/api/sessions/{s['id']}" for s in self.api("GET", "/api/sessions")]
            paths += [f"/api/kernels/{k['id']}" for k in self.api("GET", "/api/kernels")]
        except (OSError, ValueError):
            return None

        def delete():
            for path in paths:
                with contextlib.suppress(OSError, ValueError):
                    self.api("DELETE", path, timeout=30)

        if wait:
            return delete()
        thread = threading.Thread(target=delete, name="shutdown-kernels", daemon=True)
        thread.start()
        return thread

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        """Shut the server down: SIGTERM to its process group (it stops its kernels), then
        SIGKILL to the group and to anything it started that is still running."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        children = _descendants(proc.pid)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        _kill(children)


@pytest.fixture(scope="session")
def jupyterlab(browser_requirements, tmp_path_factory):
    lab = JupyterLab(tmp_path_factory.mktemp("jupyterlab"))
    with _sigterm_as_interrupt():
        try:
            yield lab.start()
        finally:
            lab.stop()


@pytest.fixture(scope="session")
def browser(browser_requirements, tmp_path_factory):
    """A chromium with a fresh profile, driven by playwright (one context, one page)."""
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    before = {p.pid for p in _descendants(os.getpid())}
    pw = context = None
    try:
        pw = sync_playwright().start()
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport=VIEWPORT, device_scale_factor=1)
        context.set_default_timeout(30_000)
        yield context
    finally:
        with contextlib.suppress(Exception):
            if context is not None:
                context.close()
        with contextlib.suppress(Exception):
            if pw is not None:
                pw.stop()
        _kill([p for p in _descendants(os.getpid()) if p.pid not in before])


class Runs:
    """Opens a notebook and runs all its cells, remembering the last run so that the
    interaction test that follows a notebook's run reuses its page."""

    def __init__(self, lab: JupyterLab, context):
        self.lab, self.context = lab, context
        self.page = None
        self.last: NotebookPage | None = None

    def run(self, name: str, path: Path | None = None) -> NotebookPage:
        """Open ``name``.ipynb from the server's folder and run all its cells; ``path`` is
        the committed copy it was made from (what figures to expect)."""
        if self.last is not None and self.last.name == name and self.last.reusable:
            return self.last
        again = self.last is not None and self.last.name == name
        if self.last is not None:
            self.last.close()
        self.last = None
        # The same notebook again: its old session must be gone before the page loads, or
        # JupyterLab reattaches to the kernel being shut down and is left with none.
        stopping = self.lab.shutdown_kernels(wait=again)
        if self.page is None or self.page.is_closed():
            self.page = self.context.new_page()
        nb = NotebookPage(self.page, self.lab, name, path or NOTEBOOKS / f"{name}.ipynb")
        try:
            nb.open()  # waits until the only kernel left is this notebook's
        finally:
            if stopping is not None:
                stopping.join()
        try:
            nb.run_all()
        except Exception:
            with contextlib.suppress(Exception):  # what it looked like when it failed
                nb.screenshot(SCREENSHOTS / f"{name}.png")
            raise
        self.last = nb
        return nb


@pytest.fixture(scope="session")
def runs(jupyterlab, browser):
    r = Runs(jupyterlab, browser)
    try:
        yield r
    finally:
        jupyterlab.shutdown_kernels()


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
