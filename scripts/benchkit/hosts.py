"""Worker hosts on one machine: network namespaces, each reaching the shared stores over
its own virtual link, each with a host name of its own.

Every host is a network namespace with a veth pair to the root namespace (10.X.i.1 on
the root side, 10.X.i.2 inside). PostgreSQL and Redis keep listening on 127.0.0.1 only,
untouched: for each host and each store port a `socat` in the root namespace listens on
the host's root-side address and forwards to 127.0.0.1, so a worker in namespace i
connects to 10.X.i.1:PORT over its link. A command runs inside with `ip netns exec` and
`unshare --uts`, under the host's own name, which is the first part of the holder id a
worker writes on the plan chunks it claims (`engine.store.leases.holder_id`).

Everything made here (namespaces, links, bridges, and any process still inside a
namespace) is removed when the block ends, whatever ended it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from scripts.benchkit.client import log, wait_until


@dataclass(frozen=True)
class Host:
    """One worker host: its namespace, its name, and its two ends of the link."""

    name: str
    namespace: str
    outer: str  # the root namespace's address on this host's link (the bridges listen here)
    inner: str  # the host's own address

    def argv(self, command: Sequence[str]) -> list[str]:
        """`command` run inside the host: its network namespace, under its host name."""
        set_name = f'hostname {self.name} && exec "$@"'
        return [
            *("ip", "netns", "exec", self.namespace),
            *("unshare", "--uts", "sh", "-c", set_name, "sh"),
            *command,
        ]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def unavailable() -> str | None:
    """Why worker hosts cannot be made here, or None when they can."""
    for tool in ("ip", "unshare", "socat"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    probe = f"tidings-probe-{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        return f"`ip netns add` is not permitted here: {detail.decode().strip() or exc}"
    try:
        subprocess.run(
            ["ip", "netns", "exec", probe, "unshare", "--uts", "true"],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`unshare --uts` is not permitted in a namespace: {exc}"
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _ip("netns", "del", probe)
    return None


def _subnet() -> int:
    """A second octet for 10.X.0.0/16 that no interface of this machine uses yet."""
    used = subprocess.run(
        ["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True
    ).stdout
    start = 100 + os.getpid() % 100
    for offset in range(100):
        octet = 100 + (start - 100 + offset) % 100
        if f" 10.{octet}." not in used:
            return octet
    raise RuntimeError("no free 10.X.0.0/16 subnet for the worker hosts")


@dataclass(frozen=True)
class Rig:
    """The hosts, and the pids of the bridges that carry their traffic to the stores."""

    hosts: list[Host]
    bridges: list[int]


@contextlib.contextmanager
def worker_hosts(count: int, ports: Sequence[int]) -> Iterator[Rig]:
    """`count` hosts, each reaching 127.0.0.1:`port` of the root namespace for every one
    of `ports` at its `outer` address; all removed afterwards."""
    tag = f"{os.getpid() % 100000:05d}"
    octet = _subnet()
    made: list[str] = []
    bridges: list[subprocess.Popen[bytes]] = []
    try:
        hosts = []
        for i in range(1, count + 1):
            host = Host(
                name=f"tidings-host-{i}",
                namespace=f"tidings-{tag}-h{i}",
                outer=f"10.{octet}.{i}.1",
                inner=f"10.{octet}.{i}.2",
            )
            outside, inside = f"td{tag}o{i}", f"td{tag}i{i}"
            _ip("netns", "add", host.namespace)
            made.append(host.namespace)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", host.namespace)
            _ip("addr", "add", f"{host.outer}/24", "dev", outside)
            _ip("link", "set", outside, "up")
            inner = ("ip", "netns", "exec", host.namespace, "ip")
            subprocess.run([*inner, "link", "set", "lo", "up"], check=True, timeout=30)
            subprocess.run(
                [*inner, "addr", "add", f"{host.inner}/24", "dev", inside], check=True, timeout=30
            )
            subprocess.run([*inner, "link", "set", inside, "up"], check=True, timeout=30)
            for port in ports:
                bridges.append(_bridge(host.outer, port))
            hosts.append(host)
        log(f"{count} worker hosts on 10.{octet}.0.0/16, bridged to ports {list(ports)}")
        yield Rig(hosts, [bridge.pid for bridge in bridges])
    finally:
        for bridge in bridges:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(bridge.pid, signal.SIGKILL)
            bridge.wait(10)
        for namespace in made:
            _kill_inside(namespace)
            # Its end of the veth pair goes with it, and so the pair.
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                _ip("netns", "del", namespace)


def _kill_inside(namespace: str) -> None:
    """SIGKILL whatever still runs in `namespace`: a namespace with a process in it
    outlives its name, and keeps its link."""
    try:
        listed = subprocess.run(
            ["ip", "netns", "pids", namespace], capture_output=True, text=True, timeout=30
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return
    for pid in listed:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _bridge(address: str, port: int) -> subprocess.Popen[bytes]:
    """A socat listening on `address`:`port` that forwards each connection to 127.0.0.1."""
    process = subprocess.Popen(
        [
            "socat",
            f"TCP-LISTEN:{port},bind={address},fork,reuseaddr,nodelay",
            f"TCP:127.0.0.1:{port},nodelay",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(
                f"socat could not listen on {address}:{port} (exit {process.returncode}):"
                f" does the server on port {port} listen on every address? It must listen"
                " on 127.0.0.1 only"
            )
        with socket.create_connection((address, port), timeout=1):
            return True

    wait_until(listening, timeout=10, every=0.05, what=f"the bridge on {address}:{port}")
    return process
