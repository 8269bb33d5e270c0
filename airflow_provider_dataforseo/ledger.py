"""The spend ledger of one task instance: what every try paid, or may have paid, in USD.

Pure module: no Airflow import; the ledger is one small JSON document on any path object with the
``pathlib`` interface (``pathlib.Path`` in tests, Airflow's ``ObjectStoragePath`` in the operator).

Every HTTP attempt is written to the ledger BEFORE it is sent (a write-ahead entry holding the most
the attempt can cost, :func:`~airflow_provider_dataforseo.ratelimit.request_cost_bound_usd`:
0.02 USD + 0.00003 USD per target, prices of ``https://dataforseo.com/apis/backlinks-api``). When
the attempt ends, the entry is

- *settled* with the cost its reply reports (the task succeeded);
- *released* when the API answered with an error status (a task the API refuses costs nothing,
  ``https://docs.dataforseo.com/v3/appendix/errors/``);
- *lost* otherwise (timeout, connection dropped, a reply that is not JSON): the API may have done
  and charged the work, so its bound stays counted.

An entry still open when a try dies (worker killed, ``execution_timeout``) is read by the next try
as lost. So :attr:`SpendLedger.upper_bound_usd` (settled + lost + open) is never below what the
account really paid for this task instance over every try, and :meth:`SpendLedger.begin` refuses
an attempt that could take it over ``max_cost_usd``. Writes are whole-document replacements
(atomic on local disks and object stores); settlements are written with the next write-ahead entry
or by :meth:`SpendLedger.flush`, which is safe because an open entry counts at least as much as
its settlement.

Document::

    {"version": 1, "owner": "<dag_id>/<task_id>/<run_id>/<map_index>", "settled_units": 2220,
     "lost_units": 0, "open": {"<try>-<n>": 2300, ...}, "tries": 2, "updated_at": 1767225600.0}

Amounts are integers in 1e-5 USD (the price's precision), so sums are exact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from typing import Any, Final

from airflow_provider_dataforseo.ratelimit import CostLimitExceededError, check_max_cost

log = logging.getLogger(__name__)

#: Version of the document; another version is refused (never silently reset).
LEDGER_VERSION: Final = 1
#: Name of the ledger file inside a checkpoint folder.
LEDGER_FILE_NAME: Final = "ledger.json"
_UNITS_PER_USD: Final = 100_000

#: A ``pathlib``-like path: ``pathlib.Path`` or ``airflow.sdk.ObjectStoragePath``.
StoragePath = Any


class LedgerError(RuntimeError):
    """The ledger cannot be read or written; the message names the file and what to do."""


class LedgerClosedError(RuntimeError):
    """The try that owns this ledger has ended: nothing more may be sent under it."""

    def __init__(self) -> None:
        super().__init__("the try has ended: no further request is sent")


def units(amount_usd: float) -> int:
    """``amount_usd`` in 1e-5 USD, rounded."""
    return round(amount_usd * _UNITS_PER_USD)


def usd(amount_units: int) -> float:
    """``amount_units`` (1e-5 USD) in USD."""
    return amount_units / _UNITS_PER_USD


def write_atomically(path: StoragePath, data: str | bytes) -> None:
    """Replace the file's content in one step: a reader sees the old or the new data, never half.

    :param path: the file.
    :param data: text (written as UTF-8) or bytes.

    A local file (``pathlib.Path`` or a ``file`` ObjectStoragePath) is written to a temporary file
    beside it, then renamed over it (``os.replace``); an object store's PUT is atomic by itself.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    local = local_os_path(path)
    if local is None:
        with path.open("wb") as out:
            out.write(payload)
        return
    folder = os.path.dirname(local)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
        os.replace(temporary, local)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def local_os_path(path: StoragePath) -> str | None:
    """The operating-system path of a local file, or ``None`` for an object-store path."""
    protocol = getattr(path, "protocol", None)
    if protocol is None:  # pathlib.Path
        return os.fspath(path)
    if protocol in ("file", "local", ""):
        return str(path.path)
    return None


class SpendLedger:
    """The spend of one task instance over all its tries, kept in ``path`` (see the module doc).

    Thread-safe: every thread of a try shares one instance.

    :param path: the ledger file (its folder must exist or be creatable).
    :param owner: the task instance, ``"<dag_id>/<task_id>/<run_id>/<map_index>"``; a ledger of
        another owner found at ``path`` is not this one's and is replaced.
    :param max_cost_usd: the cap over every try, USD, or ``None`` (spend still counted).
    :raises LedgerError: when the file exists but cannot be read as a ledger.
    """

    def __init__(self, path: StoragePath, *, owner: str, max_cost_usd: float | None = None) -> None:
        self.path = path
        self.owner = owner
        self.max_cost_usd = check_max_cost(max_cost_usd)
        self._max_units = None if self.max_cost_usd is None else units(self.max_cost_usd)
        self._lock = threading.Lock()
        self._settled = 0
        self._lost = 0
        self._open: dict[str, int] = {}
        self._tries = 0
        self._next = 0
        self._closed = False
        self._dirty = False
        self._load()
        self._tries += 1
        self._try = self._tries
        self._dirty = True  # the try count (and open entries turned lost) are written at the latest on close
        #: The bound of entries that earlier tries left open (paid or not, nobody knows), USD.
        self.inherited_lost_usd = usd(self._inherited)

    def _load(self) -> None:
        self._inherited = 0
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("version") != LEDGER_VERSION:
                raise ValueError(f"not a version {LEDGER_VERSION} ledger")
            if doc.get("owner") != self.owner:
                log.warning(
                    "The spend ledger %s belongs to %s, not %s: replaced",
                    self.path,
                    doc.get("owner"),
                    self.owner,
                )
                return
            settled, lost, tries = doc["settled_units"], doc["lost_units"], doc["tries"]
            entries = doc["open"]
            if not all(isinstance(v, int) and v >= 0 for v in (settled, lost, tries)) or not isinstance(
                entries, dict
            ):
                raise ValueError("bad amounts")
            left_open = sum(int(v) for v in entries.values())
        except (ValueError, KeyError, TypeError) as exc:
            raise LedgerError(
                f"The spend ledger {self.path} cannot be read ({exc}); it is left as it is. Look at it, "
                "then delete it to start counting afresh (what earlier tries spent is then not counted)."
            ) from None
        self._settled, self._tries = settled, tries
        self._inherited = left_open
        self._lost = lost + left_open  # entries an earlier try left open may have been paid

    # -- figures ---------------------------------------------------------------------------------

    @property
    def settled_usd(self) -> float:
        """What replies reported as charged, over every try, USD."""
        with self._lock:
            return usd(self._settled)

    @property
    def lost_usd(self) -> float:
        """The bound of attempts that may have been paid without a reply read, USD."""
        with self._lock:
            return usd(self._lost)

    @property
    def open_usd(self) -> float:
        """The bound of attempts in flight now, USD."""
        with self._lock:
            return usd(sum(self._open.values()))

    @property
    def upper_bound_usd(self) -> float:
        """The most this task instance can have spent so far over every try, USD."""
        with self._lock:
            return usd(self._settled + self._lost + sum(self._open.values()))

    @property
    def tries(self) -> int:
        """Tries that used this ledger, this one included."""
        return self._tries

    # -- entries ---------------------------------------------------------------------------------

    def begin(self, bound_usd: float, what: str) -> str:
        """Record an attempt about to be sent (written before returning), or refuse it.

        :param bound_usd: the most the attempt can cost, USD.
        :param what: the attempt, for the error (e.g. ``"a request of 12 targets"``).
        :return: the entry's id, for :meth:`settle`, :meth:`release` or :meth:`lose`.
        :raises CostLimitExceededError: when the bound would take the spend over ``max_cost_usd``.
        :raises LedgerClosedError: after :meth:`close` (the try has ended).
        """
        amount = units(bound_usd)
        with self._lock:
            if self._closed:
                raise LedgerClosedError()
            in_flight = sum(self._open.values())
            if (
                self._max_units is not None
                and self._settled + self._lost + in_flight + amount > self._max_units
            ):
                raise CostLimitExceededError(
                    max_cost_usd=usd(self._max_units),
                    spent_usd=usd(self._settled),
                    reserved_usd=usd(in_flight),
                    needed_usd=usd(amount),
                    what=what,
                    unconfirmed_usd=usd(self._lost),
                )
            self._next += 1
            entry = f"{self._try}-{self._next}"
            self._open[entry] = amount
            self._write()
        return entry

    def settle(self, entry: str, cost_usd: float) -> None:
        """The attempt's reply reports ``cost_usd`` charged (written with the next write)."""
        with self._lock:
            if self._open.pop(entry, None) is not None:
                self._settled += units(cost_usd)
                self._dirty = True

    def release(self, entry: str) -> None:
        """The API refused the attempt's task: nothing was charged."""
        with self._lock:
            if self._open.pop(entry, None) is not None:
                self._dirty = True

    def lose(self, entry: str) -> None:
        """No reply was read for the attempt: it may have been paid, so its bound stays counted."""
        with self._lock:
            amount = self._open.pop(entry, None)
            if amount is not None:
                self._lost += amount
                self._dirty = True

    def flush(self) -> None:
        """Write what changed since the last write (nothing after :meth:`close`)."""
        with self._lock:
            if self._dirty and not self._closed:
                self._write()

    def close(self) -> None:
        """End this try's use: write the ledger once more, then refuse every later change.

        Threads of the ended try that are still waiting for a reply can no longer overwrite what a
        newer try writes; their entries stay open in the file (counted as lost by the next try).
        """
        with self._lock:
            if self._closed:
                return
            if self._dirty:
                with contextlib.suppress(OSError):
                    self._write()
            self._closed = True

    def _write(self) -> None:
        doc = {
            "version": LEDGER_VERSION,
            "owner": self.owner,
            "settled_units": self._settled,
            "lost_units": self._lost,
            "open": dict(self._open),
            "tries": self._tries,
            "updated_at": time.time(),
        }
        try:
            write_atomically(self.path, json.dumps(doc, sort_keys=True))
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, json.dumps(doc, sort_keys=True))
        self._dirty = False

    def summary(self) -> dict[str, float]:
        """``{"settled_usd", "lost_usd", "open_usd", "upper_bound_usd"}``, rounded to 1e-6 USD."""
        with self._lock:
            in_flight = sum(self._open.values())
            return {
                "settled_usd": round(usd(self._settled), 6),
                "lost_usd": round(usd(self._lost), 6),
                "open_usd": round(usd(in_flight), 6),
                "upper_bound_usd": round(usd(self._settled + self._lost + in_flight), 6),
            }


def _slug(value: object) -> str:
    """A path segment for any string: safe characters kept, others as ``_``, plus a short hash."""
    text = str(value)
    safe = re.sub(r"[^A-Za-z0-9._=-]", "_", text)[:80] or "_"
    return f"{safe}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}"


def ledger_path(
    root: StoragePath, dag_id: str | None, task_id: str | None, run_id: str | None, map_index: int | None
) -> StoragePath:
    """Where the ledger of a task instance lives under a state root.

    ``<root>/<dag_id>/<task_id>/<run_id>.<map_index>.ledger.json``, each name made path-safe
    (characters other than letters, digits and ``._=-`` become ``_``, and a hash of the original
    keeps names apart).
    """
    name = f"{_slug(run_id)}.{map_index if map_index is not None else -1}.ledger.json"
    return root / _slug(dag_id) / _slug(task_id) / name


def finished_path(ledger: StoragePath) -> StoragePath:
    """Where a task instance without ``output_path`` keeps its finished result, beside its ledger.

    ``<run_id>.<map_index>.ledger.json`` -> ``<run_id>.<map_index>.done.json``.
    """
    name = ledger.name
    stem = name[: -len(".ledger.json")] if name.endswith(".ledger.json") else name
    return ledger.parent / f"{stem}.done.json"


#: A ledger under a state root not written for this long is removed by the next try of its task.
STATE_RETENTION_SECONDS: Final = 30 * 24 * 3600


def prune_ledgers(
    folder: StoragePath, *, keep: StoragePath, older_than_seconds: float = STATE_RETENTION_SECONDS
) -> int:
    """Remove ledgers (and finished results) in ``folder`` (one task's) older than ``older_than_seconds``.

    The clean-up rule of a state root: each try of a task removes its task's ledgers older than
    30 days (a retry or clear later than that starts a fresh count). Errors are logged, never
    raised: cleaning up must not fail a task.

    :param folder: ``<root>/<dag_id>/<task_id>``.
    :param keep: this task instance's ledger (never removed).
    :return: how many were removed.
    """
    removed = 0
    cutoff = time.time() - older_than_seconds
    try:
        if not folder.exists():
            return 0
        for child in list(folder.iterdir()):
            own = child.name in (keep.name, finished_path(keep).name)
            if own or not child.name.endswith((".ledger.json", ".done.json")):
                continue
            try:
                if child.stat().st_mtime < cutoff:
                    child.unlink()
                    removed += 1
            except (OSError, AttributeError, TypeError) as exc:
                log.debug("Ledger %s not pruned: %s", child, exc)
    except OSError as exc:
        log.warning("Could not prune old ledgers in %s: %s", folder, exc)
    return removed
