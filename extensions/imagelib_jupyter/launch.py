"""Start a real Jupyter server (with whatever extensions the install enables) on loopback for tests,
benchmarks and browser checks, and stop it again."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx


class JupyterServer:
    """``with JupyterServer(root, env=...) as server: httpx.get(server.url + ...)``.

    ``app`` is the module run with ``python -m`` (``jupyter_server``, or ``jupyterlab`` for the Lab UI);
    ``root`` holds the notebook folder, the runtime files and the server log; ``env`` entries of None
    remove a variable."""

    def __init__(
        self,
        root: Path,
        *,
        token: str,
        base_url: str = "/",
        env: dict[str, str | None] | None = None,
        app: str = "jupyter_server",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.root, self.token, self.base_url = Path(root), token, base_url
        # None in ``env`` removes a variable; the explicit token wins over one inherited from the caller
        merged = {**os.environ, "JUPYTER_TOKEN": None, **(env or {})}
        merged["JUPYTER_RUNTIME_DIR"] = str(self.root / "runtime")
        self.env = {k: v for k, v in merged.items() if v is not None}
        self.app, self.extra_args = app, extra_args
        self.log = self.root / "server.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT{base_url}``."""
        return f"http://127.0.0.1:{self.port}{self.base_url}"

    def start(self, timeout: float = 60) -> JupyterServer:
        """Launch and wait until ``api/status`` answers with the token."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        notebooks = self.root / "notebooks"
        notebooks.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", self.app, "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={notebooks}",
            f"--ServerApp.base_url={self.base_url}", *self.extra_args,
        ]  # fmt: skip
        if os.geteuid() == 0:  # containers and CI run as root; Jupyter refuses that unless told
            cmd.append("--allow-root")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited:\n{self.log.read_text()}")
            try:
                status = httpx.get(f"{self.url}api/status", headers={"Authorization": f"token {self.token}"})
                if status.is_success:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"jupyter server did not answer in {timeout}s:\n{self.log.read_text()}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Terminate (kill after 10 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> JupyterServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
