"""The live demo (`python -m bot demo`) as a newcomer starts it, for browser tests: a real
process, its console URL read from what it prints, stopped with Ctrl-C (SIGINT) at the end,
and Debian's chromium driven by playwright (no browser download: `executable_path`)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

from tests.support.promstack import free_port

__all__ = ["CHROMIUM", "RunningDemo", "chromium", "running_demo"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
URL = re.compile(r"https?://\S+")


@dataclass
class RunningDemo:
    process: subprocess.Popen[str]
    workdir: Path
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def url_after(self, prefix: str) -> str:
        for line in self.lines:
            if line.strip().startswith(prefix):
                return URL.findall(line)[0].rstrip("/")
        raise AssertionError(f"the demo printed no line starting with {prefix!r}:\n{self.output}")

    def wait_for_output(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(f"the demo did not print {text!r}:\n{self.output}")
            time.sleep(0.05)
        return self.output

    @property
    def console_url(self) -> str:
        return URL.findall(self.output)[-1]


def _children_of(workdir: Path) -> list[str]:
    """Command lines of live processes that mention the demo's work directory."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(workdir) in cmdline:
            found.append(cmdline)
    return found


@contextmanager
def running_demo(workdir: Path, *extra: str, timeout: float = 120.0) -> Iterator[RunningDemo]:
    argv = [
        sys.executable,
        "-m",
        "bot",
        "demo",
        "--port",
        str(free_port()),
        "--workdir",
        str(workdir),
        *extra,
    ]
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    demo = RunningDemo(process, workdir)
    started = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            demo.lines.append(line)
            if line.startswith("Open the console:"):
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        while not started.wait(0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the demo did not start (exit {process.poll()}):\n{demo.output}")
        yield demo
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        reader.join(timeout=10)


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def leftover_processes(workdir: Path) -> list[str]:
    return _children_of(workdir)
