"""A real Prometheus (and promtool) for the end-to-end tests: loopback only, temp dirs, torn down.

Needs the ``prometheus`` binary (Debian package ``prometheus``; ``make test`` installs it when it
is missing and it runs as root). Without it the tests skip and say why.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

MISSING = (
    "needs the prometheus and promtool binaries (Debian: apt-get install prometheus; "
    "`make test` installs them when run as root)"
)


def binaries() -> tuple[str, str]:
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    if prom is None or tool is None:
        pytest.skip(MISSING)
    return prom, tool


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def promtool_check_metrics(text: str) -> tuple[int, str]:
    """``promtool check metrics`` on an exposition text: (exit code, its findings)."""
    _, tool = binaries()
    done = subprocess.run(
        [tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30, check=False
    )
    return done.returncode, (done.stdout + done.stderr).strip()


@contextmanager
def running_prometheus(
    workdir: Path, sd_file: Path, static_targets: Sequence[str] = (), scrape_interval: str = "1s"
) -> Iterator[str]:
    """Start Prometheus on a free loopback port, scraping the file_sd list (job ``vllm``) and the
    static targets (job ``wva``); yields its URL once ready; stops it and waits for it to exit."""
    prom, _ = binaries()
    port = free_port()
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {"job_name": "vllm", "file_sd_configs": [{"files": [str(sd_file)], "refresh_interval": "1s"}]},
            *([{"job_name": "wva", "static_configs": [{"targets": list(static_targets)}]}] if static_targets else []),
        ],
    }
    cfg = workdir / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(config))
    log = (workdir / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            prom,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {proc.returncode}: {(workdir / 'prometheus.log').read_text()}"
                )
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("prometheus did not become ready within 30 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
