"""The alert path end to end: emulator -> sensor -> SMTP notifier -> a real SMTP server on loopback."""

from __future__ import annotations

import email
import json
import socket
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum
import pytest
import requests
from aiosmtpd.controller import Controller
from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk import DAG, BaseNotifier, task

from airflow_provider_dataforseo.changes import render_message
from airflow_provider_dataforseo.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_dataforseo.emulator.data import DATA_AS_OF, summary_item
from airflow_provider_dataforseo.sensors.backlinks_change import BacklinksChangeSensor
from airflow_provider_dataforseo.targets import normalise_targets
from tests.conftest import REPO, conn_json, run_dag

if TYPE_CHECKING:
    from collections.abc import Iterator
    from email.message import Message
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("airflow_db")

EXAMPLE = REPO / "example_dags" / "example_dataforseo_backlinks_alert.py"
EPOCH = DATA_AS_OF.date()
LATER = EPOCH + timedelta(days=7)
FIELDS = ("lost_date", "broken_backlinks")
TO, FROM = "seo-team@example.org", "airflow-alerts@example.org"
CAPTURED: dict[str, Any] = {}
ASYNC_SENT: list[str] = []


class Inbox:
    """aiosmtpd handler keeping every message received."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content)
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def take(self) -> list[tuple[str, list[str], Message]]:
        with self.lock:
            taken, self.messages = self.messages, []
        return taken


class LoopbackController(Controller):
    """aiosmtpd on 127.0.0.1 and a free port (the socket is bound first: no race for the port)."""

    def __init__(self, handler: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        super().__init__(handler, hostname="127.0.0.1", port=self.sock.getsockname()[1])

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self.sock)


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[tuple[LoopbackController, Inbox]]:
    inbox = Inbox()
    controller = LoopbackController(inbox)
    controller.start()  # returns once the server answers
    try:
        yield controller, inbox
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def alert_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(login="alerts", password="al3rt-Pa55")) as server:
        yield server


@pytest.fixture(autouse=True)
def alert_env(
    alert_emulator: EmulatorServer,
    smtp_server: tuple[LoopbackController, Inbox],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Inbox:
    controller, inbox = smtp_server
    monkeypatch.setenv(
        "AIRFLOW_CONN_DATAFORSEO_DEFAULT",
        conn_json(alert_emulator.url, login="alerts", password="al3rt-Pa55"),
    )
    smtp = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": controller.port,
        # retry_limit 1, not 0: the smtp provider of Airflow 3.2.0 (2.4.x) makes 0 connection attempts
        # for 0 and then fails on closing no client; newer ones make retry_limit + 1 attempts
        "extra": {"disable_tls": True, "disable_ssl": True, "retry_limit": 1, "timeout": 10},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(smtp))
    monkeypatch.setenv("DATAFORSEO_BASELINE_ROOT", tmp_path.as_uri() + "/baselines")
    monkeypatch.setenv("DATAFORSEO_ALERT_EMAIL_TO", TO)
    monkeypatch.setenv("DATAFORSEO_ALERT_EMAIL_FROM", FROM)
    monkeypatch.setenv("DATAFORSEO_ALERT_TIMEOUT_SECONDS", "0")  # one check per run
    monkeypatch.setenv("DATAFORSEO_ALERT_POKE_SECONDS", "1")
    set_date(alert_emulator, EPOCH.isoformat())
    inbox.take()
    CAPTURED.clear()
    ASYNC_SENT.clear()
    return inbox


def set_date(emulator: EmulatorServer, day: str) -> None:
    requests.post(f"{emulator.url}/_emulator/clock", json={"date": day}, timeout=5).raise_for_status()


def expected_changes(pages: list[str]) -> list[tuple[str, str, Any, Any]]:
    out = []
    for target in normalise_targets(pages).targets:
        before, after = summary_item(target, as_of=EPOCH), summary_item(target, as_of=LATER)
        if before is None or after is None:
            continue
        out.extend(
            (target, name, before[name], after[name]) for name in FIELDS if before[name] != after[name]
        )
    return out


def kind_of(name: str, old: Any, new: Any) -> str:
    if name == "lost_date":
        return "lost" if old is None else "recovered" if new is None else "lost_date_changed"
    return "broken_backlinks_increased" if new > old else "broken_backlinks_decreased"


def html_of(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/html":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "utf-8")
    raise AssertionError("no HTML part in the email")


def shown(value: Any) -> str:
    return "none" if value is None else str(value)


def state(run: Any, task_id: str) -> str:
    return str(next(ti.state for ti in run.get_task_instances() if ti.task_id == task_id))


def load_example(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(EXAMPLE))
    assert bag.import_errors == {}
    return bag.get_dag(dag_id)


def test_example_alert_dag_emails_the_changed_pages(alert_emulator: EmulatorServer, alert_env: Inbox) -> None:
    from example_dags.example_dataforseo_backlinks_alert import PAGES

    dag = load_example("example_dataforseo_backlinks_alert")
    # first run: the baseline is stored, nothing is sent
    run = run_dag(dag)
    assert state(run, "watch_backlinks") == "skipped"
    assert state(run, "send_alert") == "skipped"
    assert alert_env.take() == []

    # a week later in the emulator: the run emails the changes
    set_date(alert_emulator, LATER.isoformat())
    expected = expected_changes(PAGES)
    assert len(expected) >= 3
    run = run_dag(dag)
    assert state(run, "watch_backlinks") == "success"
    assert state(run, "send_alert") == "success"
    received = alert_env.take()
    assert len(received) == 1
    mail_from, recipients, message = received[0]
    assert (mail_from, recipients, message["To"], message["From"]) == (FROM, [TO], TO, FROM)
    changes = [
        {"target": t, "url": t, "field": f, "old": o, "new": n, "kind": kind_of(f, o, n), "delta": None}
        for t, f, o, n in expected
    ]
    assert message["Subject"] == render_message(changes)["subject"]
    body = html_of(message)
    for target, name, old, new in expected:
        row = f"<td>{target}</td><td></td><td>{name}</td><td>{shown(old)}</td><td>{shown(new)}</td>"
        assert row in body, row
    # every changed page is named, and only those
    assert body.count("<tr>") == len(expected) + 1

    # the same change set is not sent twice
    run = run_dag(dag)
    assert state(run, "watch_backlinks") == "skipped"
    assert alert_env.take() == []


class BrokenNotifier(BaseNotifier):
    def notify(self, context: Any) -> None:
        raise RuntimeError("chat service down")


class AsyncOnlyNotifier(BaseNotifier):
    template_fields = ("text",)

    def __init__(self) -> None:
        super().__init__()
        self.text = "{{ backlinks_alert.text }}"

    async def async_notify(self, context: Any) -> None:
        ASYNC_SENT.append(self.text)


def test_sensor_notifiers_are_best_effort(
    alert_emulator: EmulatorServer, alert_env: Inbox, tmp_path: Path
) -> None:
    pages = ["https://www.python.org/", "https://github.com/", "https://www.mozilla.org/", "https://go.dev/"]
    pages += [f"https://en.wikipedia.org/wiki/Page_{i}" for i in range(30)]
    with DAG("alert_notifiers", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        watch = BacklinksChangeSensor(
            task_id="watch",
            targets=pages,
            baseline_path=tmp_path.as_uri(),
            timeout=0,
            soft_fail=True,
            notifiers=[
                BrokenNotifier(),
                SmtpNotifier(
                    to=TO,
                    from_email=FROM,
                    subject="{{ backlinks_alert.subject }}",
                    html_content="{{ backlinks_alert.html }}",
                ),
                AsyncOnlyNotifier(),
            ],
        )

        @task
        def capture(value: Any) -> None:
            CAPTURED["alert_notifiers"] = value

        capture(watch.output)
    assert state(run_dag(dag), "watch") == "skipped"
    set_date(alert_emulator, LATER.isoformat())
    run = run_dag(dag)
    assert state(run, "watch") == "success"  # the broken notifier did not fail the task
    result = CAPTURED["alert_notifiers"]
    assert [(c["target"], c["field"], c["old"], c["new"]) for c in result["changes"]] == expected_changes(
        pages
    )
    message = render_message(result["changes"])
    received = alert_env.take()
    assert len(received) == 1
    assert received[0][2]["Subject"] == message["subject"]
    assert [message["text"]] == ASYNC_SENT


def test_example_dags_parse_and_the_watcher_is_registered(tmp_path: Path) -> None:
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=str(EXAMPLE))
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == [
        "example_dataforseo_backlinks_alert",
        "example_dataforseo_backlinks_asset_alert",
    ]
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    with create_session() as session:
        triggers = [
            t.kwargs
            for t in session.query(Trigger).all()
            if t.classpath == "airflow_provider_dataforseo.triggers.backlinks_change.BacklinksChangeTrigger"
            and t.kwargs["baseline_path"] == tmp_path.as_uri() + "/baselines/asset-watcher/"
        ]
    assert len(triggers) == 1  # the watcher's trigger, stored by Airflow with its JSON kwargs
    assert triggers[0]["commit_baseline"] is True
