"""The provider on a real deployment: Postgres, Redis, CeleryExecutor with two workers, every Airflow
component a separate process, the emulator with the API's limits on; then checks of what ran.

Run by ``scripts/deployment_test.sh`` (which builds the venv this runs in, with
``constraints/deployment.txt``), not by hand. It starts, in ``--work`` (a fresh temp dir):

- Postgres (Debian's ``postgresql`` package; ``initdb`` + ``postgres`` as the ``postgres`` user, a
  socket dir and a free loopback port) and Redis (``redis-server``, a free loopback port);
- the emulator (``dataforseo-emulator --max-simultaneous 30 --per-minute-limit``, a latency per
  request so that a fetch lasts long enough to be interrupted), and a loopback SMTP server
  (``aiosmtpd`` writing a Maildir);
- ``airflow scheduler``, ``dag-processor``, ``triggerer``, ``api-server`` and two ``airflow celery
  worker`` (distinct Celery hostnames and task instance hostnames ``worker-1``/``worker-2``).

Then, through the REST API (a JWT from ``/auth/token``, simple auth manager): the main DAG, the
at-scale DAG (``--at-scale-targets``, >= 6 mapped tasks) during whose fetch one worker's main
process gets SIGKILL, and the alert DAGs (deferrable sensor, AssetWatcher) over two emulator clock
moves. Checks (each printed ``ok``/``FAIL``, a summary with figures at the end; exit code 1 when
one failed):

- every run succeeded; rows complete (every target the emulator knows) and unique;
- the at-scale DAG's mapped tasks ran on both workers (task instance ``hostname``);
- peak requests in flight <= 30 and no 40209/40202 (the emulator's ``/_emulator/stats``);
- requests paid <= requests planned + requests in flight at the crash [needs crash-safe completion:
  branch ``ledger``; marked ``[ledger]`` in the output];
- one asset event and one email per change.

Every process started is written to ``<work>/pids`` (one ``pid name`` per line, each the leader of
its own process group) before anything waits on it, so ``deployment_test.sh``'s trap can stop what
this script could not.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import mailbox
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from collections.abc import Callable

REPO = Path(__file__).resolve().parent.parent
DAGS = REPO / "example_dags"
MAIN_DAG = "example_dataforseo_bulk_pages_summary"
AT_SCALE_DAG = "example_dataforseo_at_scale"
ALERT_DAG = "example_dataforseo_backlinks_alert"
ASSET_ALERT_DAG = "example_dataforseo_backlinks_asset_alert"
CONSUMER_DAG = "example_dataforseo_asset_consumer"
WATCHED_ASSET = "dataforseo_backlinks_changes"
LOGIN, PASSWORD = "deploy", "deploy-Pa55word"
ADMIN, ADMIN_PASSWORD = "admin", secrets.token_urlsafe(12)
#: The API's simultaneous limit, and the pool's slots: the limit less one slot per trigger that may
#: poll the API outside the pool (the deferred sensor and the AssetWatcher).
API_SIMULTANEOUS = 30
TRIGGERS_OUTSIDE_POOL = 2
POOL_SLOTS = API_SIMULTANEOUS - TRIGGERS_OUTSIDE_POOL


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Call ``probe`` until it returns something truthy (returned); raise after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(interval)


class Checks:
    """Named checks: each passes or fails with its figures; failures do not stop the run."""

    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failed: list[tuple[str, str]] = []

    def check(self, name: str, condition: bool, detail: object = "") -> bool:
        if condition:
            self.passed.append(name)
            log(f"  ok    {name} {detail}")
        else:
            self.failed.append((name, str(detail)))
            log(f"  FAIL  {name}: {detail}")
        return condition


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


@dataclass
class Processes:
    """Every process started, each the leader of its own process group; stopped in reverse."""

    work: Path
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    stop_signals: dict[str, int] = field(default_factory=dict)

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> subprocess.Popen[bytes]:
        self.stop_signals[name] = stop_signal
        logfile = (self.work / "logs" / f"{name}.log").open("ab")
        if user:
            argv = ["runuser", "-u", user, "--", *argv]
        process = subprocess.Popen(
            argv, env=env, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.work
        )
        logfile.close()
        self.started.append((name, process))
        with (self.work / "pids").open("a") as handle:
            handle.write(f"{process.pid} {name}\n")
        return process

    def get(self, name: str) -> subprocess.Popen[bytes]:
        return next(process for started, process in self.started if started == name)

    def stop(self, name: str) -> None:
        """SIGTERM one process group (SIGKILL after 20 s) and forget it, so the name can start again."""
        process = self.get(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, self.stop_signals.get(name, signal.SIGTERM))
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        self.started = [(started, p) for started, p in self.started if p is not process]

    def alive(self, name: str) -> bool:
        process = self.get(name)
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see logs/{name}.log")
        return True

    def stop_all(self) -> None:
        """SIGTERM each process group (newest first), SIGKILL what is left after 20 s."""
        for name, process in reversed(self.started):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, self.stop_signals.get(name, signal.SIGTERM))
                except ProcessLookupError:
                    continue
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    log(f"{name} ignored SIGTERM for 20 s: SIGKILL")
            # orphans of the group (e.g. task processes of a killed worker) go too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            if process.poll() is None:
                process.wait(timeout=10)


# ---------------------------------------------------------------------------------------------
# The deployment
# ---------------------------------------------------------------------------------------------


@dataclass
class Deployment:
    work: Path
    procs: Processes
    ports: dict[str, int]
    env: dict[str, str] = field(default_factory=dict)
    token: str = ""

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def emulator(self) -> str:
        return f"http://127.0.0.1:{self.ports['emulator']}"

    # -- REST API ---------------------------------------------------------------------------

    def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = requests.request(
            method,
            f"{self.api}/api/v2{path}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
            **kwargs,
        )
        if reply.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {reply.status_code} {reply.text[:500]}")
        return reply.json() if reply.content else None

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        run = self.rest("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        log(f"triggered {dag_id}: {run['dag_run_id']}")
        return str(run["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        def finished() -> str | None:
            state = self.run_state(dag_id, run_id)
            return state if state in ("success", "failed") else None

        state = str(poll(f"{dag_id} {run_id}", finished, timeout, interval=2))
        log(f"{dag_id} {run_id}: {state}")
        return state

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        reply = self.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
        return list(reply["task_instances"])

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        reply = self.rest(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
            params={"map_index": map_index, "deserialize": True},
        )
        value = reply["value"]
        return json.loads(value) if isinstance(value, str) else value

    def stats(self) -> dict[str, Any]:
        return dict(requests.get(f"{self.emulator}/_emulator/stats", timeout=10).json())


def environment(work: Path, ports: dict[str, int], dags_folder: Path = DAGS) -> dict[str, str]:
    """The environment every Airflow component shares (parse-time settings included)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DATAFORSEO"))}
    db = f"postgresql+psycopg2://postgres@127.0.0.1:{ports['postgres']}/airflow"
    hooks = work / "hooks"
    hooks.mkdir(exist_ok=True)
    # task instance hostnames: both workers run on this machine, so each names itself
    (hooks / "deployment_hostname.py").write_text(
        "import os, socket\n\n\ndef hostname():\n"
        "    return os.environ.get('DEPLOYMENT_HOSTNAME') or socket.getfqdn()\n"
    )
    smtp = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": ports["smtp"],
        "extra": {"disable_tls": True, "disable_ssl": True, "retry_limit": 0},
    }
    conn = {
        "conn_type": "dataforseo",
        "login": LOGIN,
        "password": PASSWORD,
        "host": f"http://127.0.0.1:{ports['emulator']}",
    }
    env.update(
        {
            "AIRFLOW_HOME": str(work / "airflow-home"),
            "PYTHONPATH": str(hooks),
            "C_FORCE_ROOT": "true",  # CI runs as root; Celery refuses root without it
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "deployment_hostname.hostname",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{ports['api']}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(work / "passwords.json"),
            "AIRFLOW__CORE__PARALLELISM": "32",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{ports['api']}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(ports["api"]),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{ports['redis']}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://postgres@127.0.0.1:{ports['postgres']}/airflow",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(ports["worker_logs"]),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(ports["trigger_logs"]),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # a crashed worker's tasks are found after this (default 300 s; short for the test)
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "40",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            # a task the killed worker had received but not started stays "queued" (no heartbeat
            # yet) until this (default 600 s, checked every 120 s); then it is retried
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            "AIRFLOW_CONN_DATAFORSEO_DEFAULT": json.dumps(conn),
            "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(smtp),
            # parse-time settings of the example DAGs: the same on every component
            "DATAFORSEO_OUTPUT_ROOT": (work / "output").as_uri(),
            "DATAFORSEO_BASELINE_ROOT": (work / "baselines").as_uri(),
            "DATAFORSEO_ALERT_EMAIL_TO": "seo-team@example.org",
            "DATAFORSEO_ALERT_EMAIL_FROM": "airflow@example.org",
            "DATAFORSEO_ALERT_POKE_SECONDS": "5",
            "DATAFORSEO_ALERT_TIMEOUT_SECONDS": "600",
        }
    )
    (work / "passwords.json").write_text(json.dumps({ADMIN: ADMIN_PASSWORD}))
    return env


def airflow_cli(env: dict[str, str], work: Path, *args: str) -> None:
    with (work / "logs" / "airflow-cli.log").open("ab") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    if done.returncode:
        raise RuntimeError(f"airflow {' '.join(args)} failed ({done.returncode}); see logs/airflow-cli.log")


def start_emulator(dep: Deployment, latency: float, *, wait: bool = True) -> None:
    """The emulator (process ``emulator``) on its port, ``latency`` s per request, the API's limits on."""
    argv = [
        str(Path(sys.executable).with_name("dataforseo-emulator")),
        "--port", str(dep.ports["emulator"]), "--login", LOGIN, "--password", PASSWORD,
        "--balance", "10000", "--latency", str(latency), "--max-simultaneous", str(API_SIMULTANEOUS),
        "--per-minute-limit", "--log-level", "warning", "--date", "2026-11-01",
    ]  # fmt: skip
    dep.procs.start("emulator", argv, dep.env)
    if wait:
        wait_emulator(dep)


def wait_emulator(dep: Deployment) -> None:
    def emulator_ready() -> bool:
        dep.procs.alive("emulator")
        try:
            return requests.get(f"{dep.emulator}/_emulator/stats", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    poll("emulator", emulator_ready, 30)


def start_services(dep: Deployment, args: argparse.Namespace) -> None:
    work, procs, ports = dep.work, dep.procs, dep.ports
    # Postgres as the postgres user, in a temp dir, trust auth on loopback only
    pgdata, sockets = work / "pgdata", work / "pgsock"
    for path in (pgdata, sockets):
        path.mkdir()
        shutil.chown(path, "postgres", "postgres")
    shutil.chown(work, "postgres", "postgres")  # postgres must reach its dirs
    bindir = Path(args.pg_bindir)
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(pgdata), "-A", "trust",
         "-U", "postgres", "-E", "UTF8"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    procs.start(
        "postgres",
        [str(bindir / "postgres"), "-D", str(pgdata), "-p", str(ports["postgres"]), "-k", str(sockets),
         "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300", "-c", "fsync=off"],
        dep.env,
        user="postgres",
        stop_signal=signal.SIGINT,  # postgres' fast shutdown (SIGTERM waits for every session)
    )  # fmt: skip
    procs.start(
        "redis",
        ["redis-server", "--port", str(ports["redis"]), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--daemonize", "no"],
        dep.env,
    )  # fmt: skip
    start_emulator(dep, args.latency, wait=False)
    procs.start(
        "smtp",
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{ports['smtp']}",
         "-c", "aiosmtpd.handlers.Mailbox", str(work / "mailbox")],
        dep.env,
    )  # fmt: skip

    def pg_ready() -> bool:
        procs.alive("postgres")
        done = subprocess.run(
            ["pg_isready", "-h", "127.0.0.1", "-p", str(ports["postgres"])], capture_output=True
        )
        return done.returncode == 0

    poll("postgres", pg_ready, 60)
    subprocess.run(
        ["createdb", "-h", "127.0.0.1", "-p", str(ports["postgres"]), "-U", "postgres", "airflow"], check=True
    )

    def redis_ready() -> bool:
        procs.alive("redis")
        done = subprocess.run(["redis-cli", "-p", str(ports["redis"]), "ping"], capture_output=True)
        return done.stdout.strip() == b"PONG"

    poll("redis", redis_ready, 30)

    wait_emulator(dep)

    def smtp_ready() -> bool:
        procs.alive("smtp")
        try:
            with socket.create_connection(("127.0.0.1", ports["smtp"]), timeout=2) as sock:
                return sock.recv(64).startswith(b"220")
        except OSError:
            return False

    poll("smtp", smtp_ready, 30)
    log(f"postgres :{ports['postgres']}, redis :{ports['redis']}, emulator :{ports['emulator']}, "
        f"smtp :{ports['smtp']} ready")  # fmt: skip

    started = time.monotonic()
    airflow_cli(dep.env, work, "db", "migrate")
    airflow_cli(dep.env, work, "pools", "set", "dataforseo", str(POOL_SLOTS), "DataForSEO requests in flight")
    log(f"airflow db migrate on Postgres ({time.monotonic() - started:.0f} s); pool dataforseo: {POOL_SLOTS}")

    airflow = [sys.executable, "-m", "airflow"]
    procs.start(
        "api-server", [*airflow, "api-server", "-H", "127.0.0.1", "-p", str(ports["api"]), "-w", "1"], dep.env
    )
    procs.start("scheduler", [*airflow, "scheduler"], dep.env)
    procs.start("dag-processor", [*airflow, "dag-processor"], dep.env)
    procs.start("triggerer", [*airflow, "triggerer"], dep.env)
    for number in (1, 2):
        env = {**dep.env, "DEPLOYMENT_HOSTNAME": f"worker-{number}"}
        procs.start(
            f"worker-{number}",
            [*airflow, "celery", "worker", "--celery-hostname", f"worker-{number}@%h", "--concurrency", "4",
             "--pid", str(work / f"worker-{number}.pid"), "--skip-serve-logs"],
            env,
        )  # fmt: skip

    def api_ready() -> bool:
        for name in ("api-server", "scheduler", "dag-processor", "triggerer", "worker-1", "worker-2"):
            procs.alive(name)
        try:
            return requests.get(f"{dep.api}/api/v2/monitor/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    poll("api-server", api_ready, 180)
    reply = requests.post(
        f"{dep.api}/auth/token", json={"username": ADMIN, "password": ADMIN_PASSWORD}, timeout=30
    )
    reply.raise_for_status()
    dep.token = reply.json()["access_token"]

    def components_healthy() -> bool:
        health = requests.get(f"{dep.api}/api/v2/monitor/health", timeout=5).json()
        return all(
            health.get(part, {}).get("status") == "healthy"
            for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
        )

    poll("scheduler, triggerer and dag-processor heartbeats", components_healthy, 180, interval=1)

    def workers_ready() -> bool:
        for name in ("worker-1", "worker-2"):
            procs.alive(name)
        text = "".join((work / "logs" / f"worker-{n}.log").read_text(errors="replace") for n in (1, 2))
        return text.count(" ready.") >= 2

    poll("two Celery workers", workers_ready, 180, interval=1)

    def dags_parsed() -> bool:
        reply = dep.rest("GET", "/dags", params={"limit": 100})
        return {MAIN_DAG, AT_SCALE_DAG, ALERT_DAG, ASSET_ALERT_DAG} <= {d["dag_id"] for d in reply["dags"]}

    poll("example DAGs parsed", dags_parsed, 180, interval=2)
    errors = dep.rest("GET", "/importErrors")
    if errors.get("total_entries"):
        raise RuntimeError(f"import errors: {errors}")
    log(f"Airflow up: api-server {dep.api}, scheduler, dag-processor, triggerer, 2 Celery workers")


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def known_targets(targets: list[str]) -> set[str]:
    """The normalised targets the emulator has data for (those must all be in the rows)."""
    from airflow_provider_dataforseo.emulator.data import summary_item
    from airflow_provider_dataforseo.targets import normalise_targets

    return {t for t in normalise_targets(targets).targets if summary_item(t) is not None}


def read_rows(uris: list[str]) -> list[str]:
    """The ``target`` of every row of the JSON Lines files (``file://`` URIs)."""
    rows: list[str] = []
    for uri in uris:
        with Path(uri.removeprefix("file://")).open(encoding="utf-8") as handle:
            rows.extend(json.loads(line)["target"] for line in handle)
    return rows


def check_rows(checks: Checks, what: str, rows: list[str], expected: set[str]) -> None:
    checks.check(
        f"{what}: rows unique", len(rows) == len(set(rows)), f"({len(rows)} rows, {len(set(rows))} distinct)"
    )
    checks.check(
        f"{what}: rows complete",
        set(rows) == expected,
        f"({len(expected)} targets with data; missing {len(expected - set(rows))}, "
        f"extra {len(set(rows) - expected)})",
    )


def planned_requests(targets: list[str]) -> int:
    """How many requests the operator plans for ``targets`` (the same planning it uses)."""
    from airflow_provider_dataforseo.chunks import plan_chunks
    from airflow_provider_dataforseo.targets import normalise_targets

    return len(plan_chunks(normalise_targets(targets).targets))


def main_dag_targets() -> list[str]:
    from airflow_provider_dataforseo.sources import parse_target_file

    return parse_target_file((DAGS / "data" / "top_sites_targets.txt").read_text(encoding="utf-8"))


def at_scale_targets(n: int) -> list[str]:
    """The targets the at-scale DAG's ``make_targets`` generates for ``n_targets`` = ``n``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("at_scale_example", DAGS / f"{AT_SCALE_DAG}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    domains = [line.split(",", 1)[1] for line in module.DOMAINS_FILE.read_text("utf-8").split()]
    return list(module.build_targets(n, domains))


def start_fetches(dep: Deployment, args: argparse.Namespace) -> dict[str, Any]:
    """The main DAG (a manual run, then unpaused: its @daily schedule adds one run at once) and
    the at-scale DAG, at the same time, so that the pool is shared."""
    manual = dep.trigger(MAIN_DAG)
    for dag_id in (MAIN_DAG, AT_SCALE_DAG):
        dep.rest("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
    conf = {"n_targets": args.at_scale_targets, "requests_per_group": args.requests_per_group}
    at_scale = dep.trigger(AT_SCALE_DAG, conf)
    return {"main_manual": manual, "at_scale": at_scale}


def mid_fetch(dep: Deployment, run_id: str, ti: dict[str, Any]) -> bool:
    """Whether the task's log shows it between its first stored reply and its last: some of its
    requests are paid and stored, others in flight (a group holds more requests than the 10 a
    task keeps in flight)."""
    path = (
        dep.work / "airflow-home" / "logs" / f"dag_id={AT_SCALE_DAG}" / f"run_id={run_id}" / "task_id=fetch"
        / f"map_index={ti['map_index']}" / f"attempt={ti['try_number']}.log"
    )  # fmt: skip
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return False
    return '"event":"Request ' in text and '"event":"Done:' not in text


def crash_a_worker(dep: Deployment, run_id: str) -> dict[str, Any]:
    """SIGKILL the main process of a Celery worker while one of its mapped fetches has requests
    in flight, once each worker has finished a mapped fetch (so both are seen working); return
    what was in flight then."""

    def fetching() -> dict[str, Any] | None:
        tis = [ti for ti in dep.task_instances(AT_SCALE_DAG, run_id) if ti["task_id"] == "fetch"]
        done_on = {ti.get("hostname") for ti in tis if ti["state"] == "success"}
        left = [ti for ti in tis if ti["state"] != "success"]
        if tis and not {"worker-1", "worker-2"} <= done_on and len(left) > 2:
            return None  # not yet: wait until both workers finished one (or few tasks are left)
        for ti in left:
            host = ti.get("hostname") or ""
            if ti["state"] == "running" and host.startswith("worker-") and mid_fetch(dep, run_id, ti):
                stats = dep.stats()
                if stats["in_flight"] > 0:
                    return {"ti": ti, "stats": stats}
        return None

    found = poll("a mapped fetch with requests in flight", fetching, 300, interval=0.2)
    host = found["ti"]["hostname"]
    worker = dep.procs.get(host)
    pidfile = dep.work / f"{host}.pid"
    main_pid = int(pidfile.read_text().strip()) if pidfile.exists() else worker.pid
    os.kill(main_pid, signal.SIGKILL)
    at_crash = dep.stats()
    in_flight = max(found["stats"]["in_flight"], at_crash["in_flight"])
    log(
        f"SIGKILL {host}'s main process (pid {main_pid}) during fetch map_index "
        f"{found['ti']['map_index']}: {in_flight} requests in flight"
    )
    return {"worker": host, "pid": main_pid, "map_index": found["ti"]["map_index"], "in_flight": in_flight}


def check_fetches(
    dep: Deployment, checks: Checks, figures: dict[str, Any], runs: dict[str, str], args: argparse.Namespace
) -> None:
    at_scale_state = dep.wait_run(AT_SCALE_DAG, runs["at_scale"], 600)
    checks.check("at-scale DAG run succeeded", at_scale_state == "success", at_scale_state)
    main_runs = poll(
        "main DAG runs",
        lambda: dep.rest("GET", f"/dags/{MAIN_DAG}/dagRuns", params={"limit": 100})["dag_runs"],
        30,
    )
    states = [dep.wait_run(MAIN_DAG, run["dag_run_id"], 300) for run in main_runs]
    dep.rest("PATCH", f"/dags/{MAIN_DAG}", json={"is_paused": True})
    checks.check(
        "main DAG runs succeeded (the manual run and the one unpausing scheduled)",
        states == ["success"] * len(states) and len(states) == 2,
        states,
    )
    main_targets = main_dag_targets()
    main_expected = known_targets(main_targets)
    main_plan = planned_requests(main_targets)
    main_figures = []
    for run, state in zip(main_runs, states, strict=True):
        if state != "success":
            continue
        manifest = dep.xcom(MAIN_DAG, run["dag_run_id"], "fetch_bulk_pages_summary")
        check_rows(checks, f"main DAG {run['run_type']} run", read_rows([manifest["uri"]]), main_expected)
        main_figures.append({k: manifest.get(k) for k in ("targets", "items", "requests", "cost_usd")})
    figures["main_runs"] = main_figures

    tis = [ti for ti in dep.task_instances(AT_SCALE_DAG, runs["at_scale"]) if ti["task_id"] == "fetch"]
    hosts = sorted({str(ti.get("hostname")) for ti in tis})
    figures["at_scale_fetch_tasks"] = [
        {
            "map_index": ti["map_index"],
            "state": ti["state"],
            "try_number": ti["try_number"],
            "hostname": ti["hostname"],
        }
        for ti in sorted(tis, key=lambda ti: ti["map_index"])
    ]
    checks.check(">= 6 mapped fetch tasks", len(tis) >= 6, f"({len(tis)})")
    checks.check("mapped tasks ran on both workers", hosts == ["worker-1", "worker-2"], hosts)
    plan = dep.xcom(AT_SCALE_DAG, runs["at_scale"], "plan")
    at_scale_plan = sum(int(group["requests"]) for group in plan)
    if at_scale_state == "success":
        merged = dep.xcom(AT_SCALE_DAG, runs["at_scale"], "merge")
        run_root = Path(merged["uri"].removeprefix("file://")).parent
        stored = json.loads((run_root / "manifest.json").read_text())
        expected = known_targets(at_scale_targets(args.at_scale_targets))
        check_rows(checks, "at-scale DAG (after the SIGKILL)", read_rows(stored["part_uris"]), expected)
        figures["at_scale"] = {
            k: merged.get(k) for k in ("parts", "targets", "items", "requests", "cost_usd")
        }
    figures["planned_requests"] = {
        "main_per_run": main_plan,
        "main_runs": len(main_runs),
        "at_scale": at_scale_plan,
    }
    figures["plan_total"] = main_plan * len(main_runs) + at_scale_plan


def check_spend(checks: Checks, figures: dict[str, Any]) -> None:
    paid = figures["paid_requests_fetches"]
    bound = figures["plan_total"] + figures["crash"]["in_flight"]
    checks.check(
        "[ledger] requests paid <= plan + requests in flight at the crash",
        paid <= bound,
        f"(paid {paid}, plan {figures['plan_total']}, "
        f"in flight at the crash {figures['crash']['in_flight']})",
    )


def baseline_files(dep: Deployment, folder: str) -> list[Path]:
    root = dep.work / "baselines" / folder
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def emails(dep: Deployment) -> list[str]:
    """The subjects of the messages the loopback SMTP server stored (a Maildir)."""
    box = dep.work / "mailbox"
    if not (box / "new").exists():
        return []
    return sorted(str(message["subject"]) for message in mailbox.Maildir(box, create=False))


def asset_events(dep: Deployment) -> list[dict[str, Any]]:
    assets = dep.rest("GET", "/assets", params={"name_pattern": WATCHED_ASSET})["assets"]
    [asset] = [a for a in assets if a["name"] == WATCHED_ASSET]

    def attempt() -> list[Any] | None:
        try:
            reply = dep.rest("GET", "/assets/events", params={"asset_id": asset["id"], "limit": 100})
        except RuntimeError as exc:
            # Airflow 3.3.2 answers 500 while a run an event created has no start_date yet
            # (AssetEventResponse: created_dagruns.0.start_date None): ask again
            if "HTTP 500" in str(exc):
                return None
            raise
        return [reply["asset_events"]]

    return list(poll("asset events", attempt, 60, interval=1)[0])


def runs_of(dep: Deployment, dag_id: str) -> list[dict[str, Any]]:
    return list(dep.rest("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"])


def move_clock(dep: Deployment, days: int) -> str:
    reply = requests.post(f"{dep.emulator}/_emulator/clock", json={"advance_days": days}, timeout=10)
    reply.raise_for_status()
    log(f"emulator clock moved {days} days on: {reply.json()['date']}")
    return str(reply.json()["date"])


def check_alerts(dep: Deployment, checks: Checks, figures: dict[str, Any]) -> None:
    """The deferrable sensor (alert DAG) and the AssetWatcher over two emulator clock moves."""
    dep.rest("PATCH", f"/dags/{ASSET_ALERT_DAG}", json={"is_paused": False})  # starts the watcher
    poll("the AssetWatcher's first baseline", lambda: baseline_files(dep, "asset-watcher"), 180, interval=1)
    # unpausing the @daily alert DAG schedules one run at once (R1); the manual one (R2) waits
    # behind it (max_active_runs=1)
    dep.rest("PATCH", f"/dags/{ALERT_DAG}", json={"is_paused": False})
    manual = dep.trigger(ALERT_DAG)
    poll("the sensor's first baseline", lambda: baseline_files(dep, ALERT_DAG), 180, interval=1)
    deferred = poll(
        "the sensor deferred to the triggerer",
        lambda: [
            ti
            for run in runs_of(dep, ALERT_DAG)
            for ti in dep.task_instances(ALERT_DAG, run["dag_run_id"])
            if ti["task_id"] == "watch_backlinks" and ti["state"] == "deferred"
        ],
        120,
        interval=1,
    )
    log(f"sensor deferred in run {deferred[0]['dag_run_id']}; watcher baseline stored")
    scheduled = next(run for run in runs_of(dep, ALERT_DAG) if run["dag_run_id"] != manual)
    move_clock(dep, 7)
    poll("asset event 1", lambda: len(asset_events(dep)) >= 1, 180, interval=1)
    state1 = dep.wait_run(ALERT_DAG, scheduled["dag_run_id"], 240)
    poll(
        "asset alert run 1",
        lambda: [r for r in runs_of(dep, ASSET_ALERT_DAG) if r["state"] == "success"],
        240,
        2,
    )
    # R2 compares with the values R1 stored; the watcher has committed its own on firing
    move_clock(dep, 7)
    poll("asset event 2", lambda: len(asset_events(dep)) >= 2, 180, interval=1)
    state2 = dep.wait_run(ALERT_DAG, manual, 300)
    poll(
        "asset alert run 2",
        lambda: len([r for r in runs_of(dep, ASSET_ALERT_DAG) if r["state"] in ("success", "failed")]) >= 2,
        240,
        2,
    )
    # a few more polls of the watcher and no new event: one event per change set
    quiet_until = time.monotonic() + 15
    poll("watcher quiet for 15 s", lambda: time.monotonic() > quiet_until, 30, interval=1)
    for dag_id in (ALERT_DAG, ASSET_ALERT_DAG):
        dep.rest("PATCH", f"/dags/{dag_id}", json={"is_paused": True})
    events = asset_events(dep)
    asset_runs = runs_of(dep, ASSET_ALERT_DAG)
    alert_runs = runs_of(dep, ALERT_DAG)
    changes = [len((event.get("extra") or {}).get("payload", {}).get("changes", [])) for event in events]
    subjects = emails(dep)
    checks.check(
        "alert DAG (deferrable sensor) runs succeeded", [state1, state2] == ["success"] * 2, [state1, state2]
    )
    checks.check(
        "alert DAG: 2 runs (scheduled on unpause + manual)",
        len(alert_runs) == 2,
        [r["run_type"] for r in alert_runs],
    )
    checks.check(
        "exactly one asset event per clock move",
        len(events) == 2,
        f"({len(events)} events, changes {changes})",
    )
    checks.check("every asset event carries changes", all(changes), changes)
    checks.check(
        "asset alert DAG: one successful run per event",
        [r["state"] for r in asset_runs] == ["success"] * 2,
        [r["state"] for r in asset_runs],
    )
    checks.check(
        "exactly one email per change set (2 sensor runs + 2 asset events)", len(subjects) == 4, subjects
    )
    figures["alerts"] = {"asset_events": len(events), "changes_per_event": changes, "emails": subjects}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="a fresh directory for everything")
    parser.add_argument("--pg-bindir", default="/usr/lib/postgresql/15/bin")
    parser.add_argument("--latency", type=float, default=2.0, help="emulator seconds per request")
    parser.add_argument(
        "--stages",
        default="crash,alert",
        help="comma-separated: crash,alert; or scale_timing alone (benchmarks/scheduler.py, not run by "
        "default: the timing of the at-scale DAG on a deployment that runs nothing else)",
    )
    parser.add_argument("--at-scale-targets", type=int, default=90_000, help="n_targets of the at-scale run")
    parser.add_argument(
        "--requests-per-group",
        type=int,
        default=15,
        help="requests per mapped task: more than the 10 it keeps in flight, so a crash finds some stored",
    )
    parser.add_argument("--scale-targets", type=int, default=100_000, help="scale_timing: targets")
    parser.add_argument(
        "--scale-shape", default="realistic", help="scale_timing: benchmarks/datasets.py shape"
    )
    parser.add_argument(
        "--scale-latencies",
        default="0.3,1",
        help="scale_timing: emulator seconds per request, comma-separated",
    )
    parser.add_argument(
        "--scale-requests-per-group",
        default="20,5",
        help="scale_timing: the at-scale DAG's requests_per_group, one run each (20: its default)",
    )
    args = parser.parse_args(argv)
    work: Path = args.work.resolve()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    stages = set(args.stages.split(",")) - {""}
    unknown = stages - {"crash", "alert", "scale_timing"}
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}: choose from crash, alert, scale_timing")
    if "scale_timing" in stages and len(stages) > 1:
        # other DAGs, and the alert stage's triggers polling outside the pool, would share the
        # machine, the pool and the emulator with the runs it times
        parser.error("scale_timing runs alone: --stages scale_timing")
    fetches = "scale_timing" not in stages
    dags_folder = DAGS
    if "scale_timing" in stages:
        sys.path.insert(0, str(REPO))
        from benchmarks import scheduler

        dags_folder = scheduler.dags_folder(work, DAGS)
    names = ("postgres", "redis", "emulator", "smtp", "api", "worker_logs", "trigger_logs")
    ports = {name: free_port() for name in names}
    procs = Processes(work)
    dep = Deployment(work, procs, ports)
    dep.env = environment(work, ports, dags_folder)
    checks = Checks()
    figures: dict[str, Any] = {}
    started = time.monotonic()

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    try:
        start_services(dep, args)
        figures["startup_seconds"] = round(time.monotonic() - started)
        if fetches:
            paid_before = dep.stats()["paid_requests"]
            runs = start_fetches(dep, args)
            figures["crash"] = (
                crash_a_worker(dep, runs["at_scale"]) if "crash" in stages else {"in_flight": 0}
            )
            check_fetches(dep, checks, figures, runs, args)
            figures["paid_requests_fetches"] = dep.stats()["paid_requests"] - paid_before
            check_spend(checks, figures)
        if "alert" in stages:
            check_alerts(dep, checks, figures)
        if "scale_timing" in stages:

            def restart_emulator(latency: float) -> None:
                procs.stop("emulator")
                start_emulator(dep, latency)

            scheduler.run_stage(
                dep,
                checks,
                figures,
                n_targets=args.scale_targets,
                shape=args.scale_shape,
                latencies=[float(x) for x in args.scale_latencies.split(",")],
                requests_per_group=[int(x) for x in args.scale_requests_per_group.split(",")],
                restart_emulator=restart_emulator,
            )
        stats = dep.stats()
        (work / "emulator-stats.json").write_text(json.dumps(stats))
        checks.check(
            "peak requests in flight <= 30",
            stats["peak_in_flight"] <= API_SIMULTANEOUS,
            f"({stats['peak_in_flight']})",
        )
        checks.check("no 40209/40202 refusals", not stats["refused"], stats["refused"])
    except Exception as exc:  # a step that cannot go on: record it, stop everything
        checks.check("deployment ran to the end", False, f"{type(exc).__name__}: {exc}")
    finally:
        log("stopping every process started")
        procs.stop_all()
    figures["seconds"] = round(time.monotonic() - started)
    stats_file = work / "emulator-stats.json"
    if stats_file.exists():
        figures["emulator"] = json.loads(stats_file.read_text())
    print("\n== Summary")
    print(json.dumps(figures, indent=2))
    for name, detail in checks.failed:
        print(f"FAIL {name}: {detail}")
    print(f"deployment-test: {len(checks.passed)} passed, {len(checks.failed)} failed; logs in {work}/logs")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
