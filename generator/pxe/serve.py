"""The boot service in the foreground: the real dnsmasq (DHCP, TFTP) with the generated
`pxe/dnsmasq.conf`, and a static HTTP server for `pxe/http/` (plus asset directories).

For labs, small sites and the PXE tier; a production site points its own dnsmasq and web
server at the same files. Everything both servers do is logged to standard output, one
line per request (`http: <client> GET /hosts/hv1/preseed.cfg 200 4213`), so a test can
follow a machine's boot and an operator can see which host fetched what.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import unquote, urlsplit

from generator import layout


class ServeError(RuntimeError):
    """The boot service cannot start or stopped by itself."""


@dataclass(frozen=True)
class Tree:
    """The HTTP tree: the generated `pxe/http/` first, then each asset directory."""

    roots: tuple[Path, ...]

    def find(self, url_path: str) -> Path | None:
        parts = [p for p in unquote(urlsplit(url_path).path).split("/") if p]
        if any(p in (".", "..") or "\0" in p for p in parts):
            return None
        for root in self.roots:
            candidate = root.joinpath(*parts) if parts else root
            if candidate.is_file():
                return candidate
        return None


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class _Handler(http.server.SimpleHTTPRequestHandler):
    tree: Tree

    def translate_path(self, path: str) -> str:
        # Only files of the tree; anything else (a directory, `..`) is a 404.
        found = self.tree.find(path)
        return str(found) if found is not None else "/nonexistent/kvmnet"

    def log_message(self, format: str, *args: object) -> None:  # http.server's name
        _say(f"http: {self.client_address[0]} {format % args}")


def _http_server(address: str, port: int, tree: Tree) -> http.server.ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"tree": tree})
    try:
        return http.server.ThreadingHTTPServer((address, port), functools.partial(handler))
    except OSError as exc:
        raise ServeError(
            f"cannot serve HTTP on {address or '*'}:{port} ({exc.strerror}): the interface needs the "
            "address of the profile's pxe.url, and nothing else may listen on that port"
        ) from exc


def url_address(url: str) -> tuple[str, int]:
    """The address and port the HTTP tree is served at, from `pxe.url`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    # A name (not an address) is left to the resolver of the machines: listen everywhere.
    address = host if host.replace(".", "").isdigit() or ":" in host else ""
    return address, parts.port or 80


def missing_assets(tree: Tree, wanted: Sequence[str]) -> list[str]:
    return [path for path in wanted if tree.find(path) is None]


def _forward(stream: Iterator[bytes], prefix: str) -> None:
    for raw in stream:
        _say(f"{prefix}{raw.decode(errors='replace').rstrip()}")


@contextlib.contextmanager
def dnsmasq(conf: Path, interface: str) -> Iterator[subprocess.Popen[bytes]]:
    with tempfile.TemporaryDirectory(prefix="kvmnet-pxe-") as state:
        argv = [
            *("dnsmasq", "--keep-in-foreground", f"--conf-file={conf}", f"--interface={interface}"),
            # Only this interface, and the machine's own dnsmasq (libvirt's) left alone.
            *("--bind-interfaces", "--except-interface=lo", "--log-facility=-", "--pid-file="),
            f"--dhcp-leasefile={state}/leases",
        ]
        try:
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except FileNotFoundError as exc:
            raise ServeError("dnsmasq is not installed (Debian: apt-get install dnsmasq-base)") from exc
        assert process.stdout is not None
        threading.Thread(target=_forward, args=(iter(process.stdout), "dnsmasq: "), daemon=True).start()
        try:
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def serve(output: Path, interface: str, url: str, assets: Sequence[Path], wanted: Sequence[str]) -> int:
    """Run until SIGINT or SIGTERM (exit 0), or until dnsmasq stops by itself (ServeError)."""
    tree = Tree((output / layout.PXE_HTTP, *assets))
    for path in missing_assets(tree, wanted):
        _say(f"kvmnet: warning: {path} is in neither the tree nor an asset directory (see docs/pxe.md)")
    address, port = url_address(url)
    server = _http_server(address, port, tree)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with server, dnsmasq(output / layout.PXE_DNSMASQ, interface) as process:
            threading.Thread(target=server.serve_forever, daemon=True).start()
            _say(f"kvmnet: serving {output / layout.PXE_HTTP} at {url} and DHCP/TFTP on {interface}")
            while not stop.wait(0.5):
                if process.poll() is not None:
                    raise ServeError(f"dnsmasq exited {process.returncode} (its last lines are above)")
            server.shutdown()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _say("kvmnet: boot service stopped")
    return 0
