"""Where runs execute: local processes, in-process (serial) or a Dask cluster. One interface.

``make_executor(spec, workers)`` yields a :class:`RunPool`; ``pool.submit(run)`` returns a
``concurrent.futures.Future`` of the run's metrics, whatever the backend. Sweep, plan, check and
``twin trace paper`` all go through it.

* **local**: a process pool. Workers ignore SIGINT (Ctrl-C goes to the parent, which stops them
  itself) and exit when the parent dies, even by SIGKILL (``PR_SET_PDEATHSIG`` on Linux plus a
  watchdog on the parent's pid): no orphans keep computing.
* **serial**: runs in the calling process (debugging, tests).
* **dask://HOST:PORT**: an existing Dask cluster. Runs ship their inputs by content hash
  (``twin.experiments.shipping``), so workers need neither the client's files nor its folder. A
  worker that dies mid-run has its runs rescheduled by Dask; ``retries`` covers runs that raise.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from twin.errors import TwinInputError

if TYPE_CHECKING:
    from twin.experiments.sweep import RunSpec

DASK_RETRIES = 2
DASK_WORKER_WAIT_S = 30.0
_PR_SET_PDEATHSIG = 1


class RunPool:
    """Submit runs; :meth:`interrupt` stops everything now (Ctrl-C)."""

    def submit(self, spec: RunSpec) -> cf.Future[dict[str, float]]:
        raise NotImplementedError

    def interrupt(self) -> None:
        """Cancel queued runs and stop running ones; finished results stay with the caller."""


class SerialPool(RunPool):
    def submit(self, spec: RunSpec) -> cf.Future[dict[str, float]]:
        from twin.experiments.sweep import execute

        future: cf.Future[dict[str, float]] = cf.Future()
        try:
            future.set_result(execute(spec.runner, spec.inputs.main.path, spec.seed, spec.overrides))
        except Exception as err:
            future.set_exception(err)
        return future


def _worker_init(parent: int) -> None:
    """In each local worker: leave Ctrl-C to the parent, and die with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):  # Linux: SIGKILL when the parent exits, however it exits
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="twin-parent-watch").start()


def _watch_parent(parent: int) -> None:
    # Portable fallback for PDEATHSIG: an orphan is re-parented, so its parent pid changes.
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


class LocalPool(RunPool):
    def __init__(self, workers: int) -> None:
        self._pool = cf.ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(os.getpid(),))

    def submit(self, spec: RunSpec) -> cf.Future[dict[str, float]]:
        from twin.experiments.sweep import execute

        return self._pool.submit(execute, spec.runner, spec.inputs.main.path, spec.seed, spec.overrides)

    def interrupt(self) -> None:
        processes = list((getattr(self._pool, "_processes", None) or {}).values())  # None once shut down
        self._pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:  # a run can take minutes: stop it rather than wait for it
            if proc.is_alive():
                proc.terminate()
        for proc in processes:
            proc.join(timeout=2)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskPool(RunPool):
    def __init__(self, address: str) -> None:
        try:
            from distributed import Client  # optional extra
        except ImportError:
            raise TwinInputError(
                "the Dask executor needs the optional extra: pip install '.[dask]'", field="--executor", value=address
            ) from None
        try:
            self._client = Client(address, timeout="10s")
        except OSError as err:
            raise TwinInputError(f"cannot reach the Dask scheduler: {err}", field="--executor", value=address) from None
        try:  # inputs are replicated to the workers up front: with none, that would wait forever
            self._client.wait_for_workers(1, timeout=DASK_WORKER_WAIT_S)
        except TimeoutError:
            self._client.close()
            raise TwinInputError(
                f"the Dask cluster has no worker (waited {DASK_WORKER_WAIT_S:.0f} s)", field="--executor", value=address
            ) from None
        self._blobs: dict[str, Any] = {}  # sha256 -> Dask future holding the file's bytes
        self._running: list[Any] = []

    def _blob(self, sha: str, path: str) -> Any:
        from twin.experiments.shipping import identity, read_blob

        if sha not in self._blobs:
            # A task, not scatter(): Dask can recompute it from the graph if its worker dies.
            future = self._client.submit(identity, read_blob(path), key=f"twin-input-{sha}", pure=False)
            # Copied to every worker at once: Dask sends a task to where its inputs are, so a file held
            # by one worker would pull every run that reads it onto that worker and idle the others.
            self._client.replicate([future])
            self._blobs[sha] = future
        return self._blobs[sha]

    def submit(self, spec: RunSpec) -> cf.Future[dict[str, float]]:
        from twin.experiments.shipping import execute_shipped

        blobs = {f.sha256: self._blob(f.sha256, f.path) for f in spec.inputs.files}
        dask_future = self._client.submit(
            execute_shipped,
            spec.runner,
            spec.inputs,
            spec.seed,
            spec.shipped_overrides,
            blobs,
            pure=False,
            retries=DASK_RETRIES,
        )
        self._running.append(dask_future)
        return _bridge(dask_future)

    def interrupt(self) -> None:
        self._client.cancel(self._running, force=True)

    def close(self) -> None:
        self._client.close()


def _bridge(dask_future: Any) -> cf.Future[dict[str, float]]:
    """A concurrent.futures view of a Dask future (Dask calls back from its own thread)."""
    future: cf.Future[dict[str, float]] = cf.Future()
    future.set_running_or_notify_cancel()

    def done(f: Any) -> None:
        try:
            future.set_result(f.result())
        except BaseException as err:  # CancelledError included: the caller sees it as a failed run
            future.set_exception(err)

    dask_future.add_done_callback(done)
    return future


@contextmanager
def make_executor(spec: str, workers: int) -> Iterator[RunPool]:
    """``local`` (processes), ``serial`` (in-process, for debugging) or ``dask://HOST:PORT``."""
    pool: RunPool
    closer: Callable[[], None] | None
    if spec == "local":
        local = LocalPool(workers)
        pool, closer = local, local.close
    elif spec == "serial":
        pool, closer = SerialPool(), None
    elif spec.startswith(("dask://", "tcp://")):
        dask = DaskPool("tcp://" + spec.split("://", 1)[1])
        pool, closer = dask, dask.close
    else:
        raise TwinInputError("executor must be local, serial or dask://HOST:PORT", field="--executor", value=spec)
    try:
        yield pool
    except BaseException:
        pool.interrupt()  # Ctrl-C or an error: stop the workers now instead of draining the queue
        raise
    finally:
        if closer is not None:
            closer()
