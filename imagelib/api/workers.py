"""``imagelib serve --workers N``: N uvicorn processes on one listening socket, with balanced accepts.

With a plain shared socket (uvicorn's and gunicorn's ``--workers``) every process wakes for a new
connection and whichever runs first accepts it, and every other one pending: four kept-alive viewer
connections often land 3/1 or 4/0 on two processes, and one GIL then serves most of the traffic while
a core idles. Here each process counts its open connections in shared memory and accepts only while
it holds no more than the least busy process (nginx's ``accept_mutex`` idea, by connection count), so
connections spread evenly whatever order the processes wake in. A connection no eligible process
takes within :data:`GRACE` seconds (that process is stuck or restarting) is taken by any process.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import select
import signal
import socket
import threading
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE, Config

log = logging.getLogger("imagelib.api")
spawn = multiprocessing.get_context("spawn")  # a fresh interpreter per process, as uvicorn does
GRACE = 0.05  # seconds a connection waits for a less busy process before any process takes it
STEP = 0.001  # how often a busier process looks again while a connection is pending
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class BalancedServer(uvicorn.Server):
    """A uvicorn server that accepts from the shared socket only while it is among the least busy."""

    def __init__(self, config: Config, counts: Any, serving: Any, slot: int) -> None:
        super().__init__(config)
        self.counts, self.serving, self.slot = counts, serving, slot
        self._acceptors: list[asyncio.Task[None]] = []

    def my_turn(self) -> bool:
        """This process holds no more open connections than any other that serves (one still starting
        or being replaced takes none, so it is not waited for)."""
        mine, counts, serving = self.counts[self.slot], self.counts, self.serving
        return all(mine <= counts[i] for i in range(len(counts)) if serving[i] and i != self.slot)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Uvicorn's start-up (lifespan, state) with no listener of its own, then one acceptor per socket."""
        await super().startup(sockets=[])
        factory = self._protocol_factory()
        self._acceptors = [asyncio.create_task(self._accept(sock, factory)) for sock in sockets or []]

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, then uvicorn's graceful shutdown of the open connections."""
        self.serving[self.slot] = 0  # the others stop leaving connections to this process
        for task in self._acceptors:
            task.cancel()
        await super().shutdown(sockets=sockets)

    def _protocol_factory(self) -> Any:
        """Uvicorn's HTTP protocol for this server, counting its connection out when it closes."""
        config, counts, slot, server_state, app_state = (
            self.config,
            self.counts,
            self.slot,
            self.server_state,
            self.lifespan.state,
        )

        class Counted(config.http_protocol_class):  # type: ignore[name-defined,misc]
            def connection_lost(self, exc: Exception | None) -> None:
                counts[slot] -= 1
                super().connection_lost(exc)

        return lambda: Counted(config=config, server_state=server_state, app_state=app_state)

    async def _accept(self, sock: socket.socket, factory: Any) -> None:
        """Accept connections for as long as the server runs, leaving each to a less busy process first."""
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        while True:
            await _readable(loop, sock)
            deadline = loop.time() + GRACE
            while not self.my_turn() and loop.time() < deadline and _pending(sock):
                await asyncio.sleep(STEP)
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                continue  # another process took it
            except OSError as exc:  # out of descriptors, aborted handshake: keep serving what is open
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            self.counts[self.slot] += 1  # counted now, so this process's next look already sees it
            try:
                await loop.connect_accepted_socket(factory, conn)
            except OSError:
                self.counts[self.slot] -= 1
                conn.close()


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Wait until a connection is pending on the listening socket."""
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


def _pending(sock: socket.socket) -> bool:
    """A connection is still waiting to be accepted (no other process has taken it)."""
    return bool(select.select([sock], [], [], 0)[0])


def _child(config: Config, sock: socket.socket, shared: tuple[Any, Any, Any], slot: int) -> None:
    """One worker process: uvicorn's logging, then the balanced server until SIGTERM/SIGINT.

    ``shared``: open connections and "serving now" per process (the balance), and "has started" per
    process (the parent's: a process that served and then stopped is replaced, not a start-up failure)."""
    counts, serving, started = shared
    config.configure_logging()
    server = BalancedServer(config, counts, serving, slot)

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        started[slot] = serving[slot] = int(server.started)
        await task

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:  # uvloop when installed
        runner.run(serve())


def run(config: Config, workers: int) -> int:
    """Serve with ``workers`` processes until SIGINT/SIGTERM; restart a process that dies after it
    started, stop (status 3) when one dies before it could serve (a broken app would fail again)."""
    sock = config.bind_socket()
    sock.listen(config.backlog)  # asyncio's create_server would listen; here the processes accept themselves
    counts, serving, started = (spawn.Array("i", workers, lock=False) for _ in range(3))
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}

    def start(slot: int) -> multiprocessing.process.BaseProcess:
        counts[slot] = serving[slot] = started[slot] = 0  # a replaced process's connections died with it
        shared = (counts, serving, started)
        proc = spawn.Process(target=_child, args=(config, sock, shared, slot), daemon=False)
        proc.start()
        return proc

    procs, status = [start(slot) for slot in range(workers)], 0
    try:
        while not stop.wait(0.5):
            for slot, proc in enumerate(procs):
                if proc.is_alive():
                    continue
                proc.join()
                if not started[slot]:
                    log.error("server process %s exited (%s) before it could serve", proc.pid, proc.exitcode)
                    status = STARTUP_FAILURE
                    stop.set()
                    break
                log.warning("server process %s died (%s); starting another", proc.pid, proc.exitcode)
                procs[slot] = start(slot)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: each finishes its open requests and its lifespan shutdown
        for proc in procs:
            proc.join()
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
