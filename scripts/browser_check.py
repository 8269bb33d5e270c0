"""Check the provider's UI in a real browser: the connection form and the example DAG's trigger form.

Starts ``airflow api-server`` on 127.0.0.1 and a free port (its own throw-away AIRFLOW_HOME with
SQLite, the simple auth manager with every user admin, the example DAGs serialised), drives
Debian's headless Chromium with Selenium and chromedriver (``/usr/bin/chromium``,
``/usr/bin/chromedriver``; nothing is downloaded), and:

1. Admin -> Connections -> Add Connection, picks "DataForSEO": asserts the relabelled fields with
   their placeholders (Base URL, API login, API password), that Port and Schema are hidden, and the
   "Use sandbox" switch with its description; fills the form, switches sandbox on, saves, and
   checks through the REST API that the connection was stored as the hook reads it
   (``conn_type`` ``dataforseo``, ``extra`` ``{"sandbox": true}``).
2. The example DAG's Trigger form: asserts the params (Targets, Include subdomains, Output root)
   with their descriptions; types custom targets, switches subdomains off, triggers, and checks
   through the REST API that the run was created with that ``conf``.
3. The at-scale DAG's Trigger form: its params are shown under unambiguous titles, the Trigger
   button is enabled with the defaults (the optional targets file left empty), and the run it
   creates carries the defaults.

Screenshots and the api-server log go to ``--out`` (default ``.browser-check/``, git-ignored).
Run it with ``scripts/browser_check.sh``, which installs what it needs first. Exit code 0 when every
check passed; the last line reads ``browser-check: N passed, M failed``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from collections.abc import Callable

    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

REPO = Path(__file__).resolve().parent.parent
DAG_ID = "example_dataforseo_bulk_pages_summary"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Flags for a quiet, sandbox-less headless Chromium that talks to nothing but the api-server.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1300",
)
WAIT_SECONDS = 60.0


class Checks:
    """Named checks: each passes or fails with a reason; failures do not stop the run."""

    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failed: list[tuple[str, str]] = []

    def check(self, name: str, condition: bool, detail: object = "") -> None:
        if condition:
            self.passed.append(name)
            print(f"  ok    {name}")
        else:
            self.failed.append((name, str(detail)))
            print(f"  FAIL  {name}: {detail}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(what: str, probe: Callable[[], bool], timeout: float = WAIT_SECONDS) -> None:
    """Call ``probe`` until it returns True; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.2)


def airflow(env: dict[str, str], *args: str, log: Path) -> None:
    """Run one ``airflow`` CLI command; its output goes to ``log``; raise if it fails."""
    with log.open("a") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode:
        raise RuntimeError(f"airflow {' '.join(args)} failed ({done.returncode}); see {log}")


class ApiServer:
    """``airflow api-server`` on 127.0.0.1 in its own process group, stopped on exit."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._log = log.open("a")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "-H", "127.0.0.1", "-p", str(port), "-w", "1"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def healthy(self) -> bool:
        if self._process.poll() is not None:
            raise RuntimeError(f"api-server exited with {self._process.returncode}; see {self._log.name}")
        try:
            return requests.get(f"{self.url}/api/v2/monitor/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)  # the group of the process started above
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._log.close()


def browser(profile: Path) -> WebDriver:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def wait_for(driver: WebDriver, xpath: str, root: Any = None) -> WebElement:
    """The first element matching ``xpath`` once it is displayed (relative to ``root`` if given)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def find(_: Any) -> Any:
        for element in (root or driver).find_elements(By.XPATH, xpath):
            if element.is_displayed():
                return element
        return False

    return WebDriverWait(driver, WAIT_SECONDS).until(find)  # type: ignore[no-any-return]


def click(driver: WebDriver, xpath: str, root: Any = None) -> None:
    """Click the element once nothing covers it (accordions and dialogs animate)."""
    from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    def attempt(_: Any) -> bool:
        try:
            wait_for(driver, xpath, root).click()
        except (ElementClickInterceptedException, StaleElementReferenceException):
            return False
        return True

    WebDriverWait(driver, WAIT_SECONDS).until(attempt)


def expand(driver: WebDriver, dialog: WebElement, title: str) -> None:
    """Open the form's accordion section ``title`` (a no-op when it is open already)."""
    trigger = f".//button[@data-part='item-trigger'][normalize-space(.)='{title}']"
    if wait_for(driver, trigger, dialog).get_attribute("aria-expanded") != "true":
        click(driver, trigger, dialog)
    wait_for(driver, f"{trigger}[@aria-expanded='true']", dialog)


def labelled_input(dialog: WebElement, label: str) -> WebElement | None:
    """The input of the form field whose label reads ``label``, if the form shows one."""
    from selenium.webdriver.common.by import By

    for field in dialog.find_elements(By.CSS_SELECTOR, "[data-part=root][role=group]"):
        labels = field.find_elements(By.CSS_SELECTOR, "label[data-part=label]")
        if labels and labels[0].text.replace("*", "").strip() == label and labels[0].is_displayed():
            inputs = field.find_elements(By.CSS_SELECTOR, "input, textarea")
            return inputs[0] if inputs else None
    return None


def check_connection_form(driver: WebDriver, api: str, out: Path, checks: Checks) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    print("Connection form (Admin -> Connections -> Add Connection -> DataForSEO)")
    driver.get(f"{api}/connections")
    click(driver, "//button[contains(., 'Add Connection')]")
    dialog = wait_for(driver, "//*[@role='dialog'][.//h2[contains(., 'Add Connection')]]")
    kind = wait_for(driver, ".//input[@role='combobox']", dialog)
    kind.send_keys("DataForSEO")
    option = wait_for(driver, "//*[@role='option'][normalize-space(.)='DataForSEO']")
    checks.check("connection type 'DataForSEO' is offered", option.text == "DataForSEO", option.text)
    kind.send_keys(Keys.ENTER)
    wait_for(driver, ".//label[normalize-space(.)='API login']", dialog)

    expected = {
        "Base URL": ("host", "https://api.dataforseo.com"),
        "API login": ("login", "API login from app.dataforseo.com/api-access"),
        "API password": ("password", "API password (not the website password)"),
    }
    for label, (name, placeholder) in expected.items():
        field = labelled_input(dialog, label)
        shown = None if field is None else (field.get_attribute("name"), field.get_attribute("placeholder"))
        checks.check(f"field '{label}' with its placeholder", shown == (name, placeholder), shown)
    for hidden in ("Port", "Schema", "Host", "Login", "Password"):
        checks.check(f"field '{hidden}' is not shown", labelled_input(dialog, hidden) is None)
    driver.save_screenshot(str(out / "connection-form-fields.png"))
    password = labelled_input(dialog, "API password")
    checks.check(
        "API password is masked", password is not None and password.get_attribute("type") == "password"
    )

    expand(driver, dialog, "Extra Fields")
    sandbox_label = wait_for(driver, ".//label[@data-part='label'][contains(., 'Use sandbox')]", dialog)
    switch = dialog.find_elements(By.CSS_SELECTOR, "input[type=checkbox][name=element_sandbox]")
    driver.save_screenshot(str(out / "connection-form-sandbox.png"))
    checks.check("'Use sandbox' switch is shown", bool(switch) and sandbox_label.is_displayed())
    checks.check("'Use sandbox' is optional", "*" not in sandbox_label.text, sandbox_label.text)
    checks.check(
        "'Use sandbox' explains itself",
        # the help text names the Base URL field (airflow_provider_dataforseo.SANDBOX_DESCRIPTION)
        "https://sandbox.dataforseo.com" in dialog.text and "Base URL field is empty" in dialog.text,
    )

    # Fill in and save; the stored connection must be what the hook reads.
    expand(driver, dialog, "Standard Fields")
    connection_id = labelled_input(dialog, "Connection ID")
    assert connection_id is not None
    connection_id.send_keys("dataforseo_browser_check")
    for label, value in (("API login", "you@example.com"), ("API password", "not-a-real-password")):
        field = labelled_input(dialog, label)
        assert field is not None
        field.send_keys(value)
    expand(driver, dialog, "Extra Fields")
    # the switch's own control: a click on the label's centre can land on its (two-line) help text
    click(driver, ".//label[@id='switch:element_sandbox']//*[@data-part='control']", dialog)
    wait_for(driver, ".//label[@id='switch:element_sandbox'][@data-state='checked']", dialog)
    driver.save_screenshot(str(out / "connection-form-filled.png"))
    click(driver, ".//button[contains(., 'Save')][not(@disabled)]", dialog)

    def stored() -> bool:
        return (
            requests.get(f"{api}/api/v2/connections/dataforseo_browser_check", timeout=5).status_code == 200
        )

    poll("saved connection", stored, timeout=30)
    conn = requests.get(f"{api}/api/v2/connections/dataforseo_browser_check", timeout=5).json()
    checks.check(
        "saved as conn_type 'dataforseo'", conn.get("conn_type") == "dataforseo", conn.get("conn_type")
    )
    checks.check("saved login", conn.get("login") == "you@example.com", conn.get("login"))
    extra = json.loads(conn.get("extra") or "{}")
    checks.check("sandbox switch saved as extra {'sandbox': true}", extra.get("sandbox") is True, extra)
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_SECONDS).until(expected_conditions.staleness_of(dialog))
    wait_for(driver, "//*[contains(., 'dataforseo_browser_check')][not(ancestor::*[@role='dialog'])]")
    driver.save_screenshot(str(out / "connections-list.png"))


def check_trigger_form(driver: WebDriver, api: str, out: Path, checks: Checks) -> None:
    print(f"Trigger form of {DAG_ID}")
    driver.get(f"{api}/dags/{DAG_ID}")
    click(driver, "//button[normalize-space(.)='Trigger']")
    dialog = wait_for(driver, "//*[@role='dialog'][.//h2[contains(., 'Trigger Dag')]]")
    wait_for(driver, ".//label[contains(., 'Targets')]", dialog)
    descriptions = {
        "Targets": "pages as https:// URLs, domains without scheme or www.",
        "Include subdomains": "Count backlinks pointing to the targets' subdomains too",
        "Output root": "ObjectStoragePath URI under which <dag_id>/<run_id>/ is written.",
    }
    for label, description in descriptions.items():
        shown = labelled_input(dialog, label)
        checks.check(f"param '{label}' is shown", shown is not None)
        checks.check(f"param '{label}' is described", description in dialog.text)
    subdomains = labelled_input(dialog, "Include subdomains")
    checks.check(
        "'Include subdomains' is a switch, on by default",
        subdomains is not None
        and subdomains.get_attribute("type") == "checkbox"
        and subdomains.is_selected(),
    )
    driver.save_screenshot(str(out / "trigger-form.png"))

    targets = labelled_input(dialog, "Targets")
    assert targets is not None and subdomains is not None
    targets.clear()
    targets.send_keys("example.com, https://example.org/page")
    click(driver, ".//label[@data-scope='switch'][.//input[@name='element_include_subdomains']]", dialog)
    wait_for(driver, ".//label[@data-scope='switch'][@data-state='unchecked']", dialog)
    driver.save_screenshot(str(out / "trigger-form-filled.png"))
    click(driver, ".//button[normalize-space(.)='Trigger'][not(@disabled)]", dialog)

    def runs() -> list[dict[str, Any]]:
        reply = requests.get(f"{api}/api/v2/dags/{DAG_ID}/dagRuns", timeout=5).json()
        return list(reply.get("dag_runs", []))

    poll("triggered run", lambda: bool(runs()), timeout=30)
    conf = runs()[-1].get("conf")
    checks.check(
        "run triggered with the typed params",
        conf is not None
        and conf.get("targets") == "example.com, https://example.org/page"
        and conf.get("include_subdomains") is False,
        conf,
    )


AT_SCALE_DAG_ID = "example_dataforseo_at_scale"


def check_at_scale_trigger_form(driver: WebDriver, api: str, out: Path, checks: Checks) -> None:
    """The at-scale DAG triggers with its defaults: its optional targets file does not hold the
    Trigger button back (issue 14), and its count of targets is not titled "Targets"."""
    print(f"Trigger form of {AT_SCALE_DAG_ID}")
    driver.get(f"{api}/dags/{AT_SCALE_DAG_ID}")
    click(driver, "//button[normalize-space(.)='Trigger']")
    dialog = wait_for(driver, "//*[@role='dialog'][.//h2[contains(., 'Trigger Dag')]]")
    wait_for(driver, ".//label[contains(., 'Number of targets to generate')]", dialog)
    driver.save_screenshot(str(out / "at-scale-trigger-form.png"))
    for label in ("Number of targets to generate", "Targets file (optional)", "Output root"):
        checks.check(f"at-scale param '{label}' is shown", labelled_input(dialog, label) is not None)
    checks.check("at-scale form has no param titled 'Targets'", labelled_input(dialog, "Targets") is None)
    button = wait_for(driver, ".//button[normalize-space(.)='Trigger']", dialog)
    checks.check(
        "at-scale Trigger button enabled with the defaults",
        button.get_attribute("disabled") is None,
        button.get_attribute("disabled"),
    )
    click(driver, ".//button[normalize-space(.)='Trigger'][not(@disabled)]", dialog)

    def runs() -> list[dict[str, Any]]:
        reply = requests.get(f"{api}/api/v2/dags/{AT_SCALE_DAG_ID}/dagRuns", timeout=5).json()
        return list(reply.get("dag_runs", []))

    poll("triggered at-scale run", lambda: bool(runs()), timeout=30)
    conf = runs()[-1].get("conf") or {}
    checks.check(
        "at-scale run triggered with the default params",
        conf.get("targets_uri") is None and conf.get("n_targets", 100_000) == 100_000,
        conf,
    )


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "SE_OFFLINE": "true",  # Selenium Manager must never download a driver or browser
        }
    )
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / ".browser-check", help="screenshots and logs")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for program in (CHROMIUM, CHROMEDRIVER):
        if not Path(program).exists():
            print(f"{program} is missing: apt-get install chromium chromium-driver", file=sys.stderr)
            return 2
    os.environ["SE_OFFLINE"] = "true"
    started = time.monotonic()
    env = environment(out / "airflow-home")
    log = out / "airflow.log"
    checks = Checks()
    airflow(env, "db", "migrate", log=log)
    airflow(env, "dags", "reserialize", log=log)
    print(f"Airflow home ready ({time.monotonic() - started:.0f} s)")
    server = ApiServer(env, free_port(), out / "api-server.log")
    try:
        poll("api-server", server.healthy, timeout=120)
        print(f"api-server on {server.url} ({time.monotonic() - started:.0f} s)")
        with tempfile.TemporaryDirectory(prefix="browser-check-profile-") as profile:
            driver = browser(Path(profile))
            try:
                for step in (check_connection_form, check_trigger_form, check_at_scale_trigger_form):
                    try:
                        step(driver, server.url, out, checks)
                    except Exception as exc:  # a step that cannot go on: record it, keep the rest
                        driver.save_screenshot(str(out / f"failed-{step.__name__}.png"))
                        checks.check(step.__name__, False, f"{type(exc).__name__}: {exc}")
            finally:
                driver.quit()
    finally:
        server.stop()
    print(f"Screenshots in {out} ({time.monotonic() - started:.0f} s in all)")
    print(f"browser-check: {len(checks.passed)} passed, {len(checks.failed)} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
