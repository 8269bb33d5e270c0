"""A small pool of daemon worker threads that never keeps the process alive.

Pure module: no Airflow import. :class:`concurrent.futures.ThreadPoolExecutor` joins its worker
threads when the interpreter exits, so one request hung in a worker (a server that never
answers) keeps a finished or timed-out Airflow task's process alive until the request ends.
:class:`DaemonPool` runs calls in daemon threads instead: after :meth:`DaemonPool.shutdown` the
process exits whatever its workers are still doing. Callers that must not lose work wait for
the futures themselves, for as long as they choose.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")
_Work = tuple["Future[Any]", "Callable[..., Any]", tuple[Any, ...], dict[str, Any]]


class DaemonPool:
    """Run submitted calls in at most ``max_workers`` daemon threads; results come back as futures.

    :param max_workers: threads at most (>= 1), started as calls are submitted.
    :param name: prefix of the threads' names.
    :raises ValueError: when ``max_workers`` is below 1.
    """

    def __init__(self, max_workers: int, name: str = "worker") -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers!r}")
        self.max_workers = max_workers
        self.name = name
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shut = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``fn(*args, **kwargs)``; a free worker runs it.

        :return: its :class:`~concurrent.futures.Future`.
        :raises RuntimeError: after :meth:`shutdown`.
        """
        future: Future[T] = Future()
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot submit after shutdown")
            self._queue.put((future, fn, args, kwargs))
            if len(self._threads) < self.max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self) -> None:
        while True:
            work = self._queue.get()
            if work is None:
                return
            future, fn, args, kwargs = work
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # the caller sees it through the future
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del work, future, fn, args, kwargs  # let the result go with its future

    def shutdown(self, *, cancel_futures: bool = False) -> None:
        """Take no more calls; the workers end once the queue is empty. Never waits for them.

        :param cancel_futures: cancel the calls not started yet.
        """
        with self._lock:
            self._shut = True
            if cancel_futures:
                while True:
                    try:
                        work = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if work is not None:
                        work[0].cancel()
            for _ in self._threads:
                self._queue.put(None)
