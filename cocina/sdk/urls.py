"""Which URLs a served model may fetch for a `Path` input: refusing server-side request forgery (SSRF).

By default a URL must be http(s) and every address its host resolves to must be public: loopback, private
ranges (10/8, 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16, where cloud metadata services answer),
CGNAT, multicast and reserved addresses are refused, and so are `file://` and other schemes. The check is made
twice: when the prediction is admitted (a clear 422 naming the field), and again when the worker downloads —
each redirect is checked before it is followed, and the address actually connected to is checked at connect
time (`GuardedBackend`), so a DNS answer that changes between the two checks (DNS rebinding) gains nothing.

`UrlPolicy.allow_hosts` lists hosts (`name` or `name:port`) that are allowed whatever they resolve to (an
internal bucket, a test server); `allow_private` turns the address check off.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore

POLICY_ENV = "COCINA_URL_POLICY"  # how serving hands the policy to a model's process (read in that process)


class UrlRefused(ValueError):
    """The URL may not be fetched; the message says why (safe to show: it names no internal detail)."""


@dataclass(frozen=True)
class UrlPolicy:
    """What `Path` input URLs may point at."""

    allow_private: bool = False
    allow_hosts: tuple[str, ...] = ()
    allow_dirs: tuple[str, ...] = ()  # local files under these (the server's own uploads) are accepted

    def to_json(self) -> str:
        return json.dumps(
            {
                "allow_private": self.allow_private,
                "allow_hosts": list(self.allow_hosts),
                "allow_dirs": list(self.allow_dirs),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> UrlPolicy:
        data = json.loads(text)
        return cls(
            bool(data.get("allow_private")),
            tuple(str(h) for h in data.get("allow_hosts", ())),
            tuple(str(d) for d in data.get("allow_dirs", ())),
        )

    def path_allowed(self, path: str) -> bool:
        """Whether a local path is one of the server's own files (resolved first: no `..` escapes)."""
        resolved = os.path.realpath(path)
        return any(os.path.commonpath([resolved, os.path.realpath(d)]) == os.path.realpath(d) for d in self.allow_dirs)

    def host_allowed(self, host: str, port: int | None) -> bool:
        host = host.lower().strip("[]")
        return host in self.allow_hosts or (port is not None and f"{host}:{port}" in self.allow_hosts)


def _ip_refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (such as a cloud metadata service)"
    if ip.is_private:
        return "a private address"
    if ip.is_multicast or ip.is_reserved or ip.is_unspecified or not ip.is_global:
        return "a non-public address"
    return None


def address_refusal(address: str, policy: UrlPolicy) -> str | None:
    """Why connecting to `address` (an IP) is refused, or None."""
    if policy.allow_private:
        return None
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return "an address that is not an IP"
    return _ip_refusal(ip)


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; `UrlRefused` for anything else."""
    parsed = urllib.parse.urlsplit(url)
    scheme = parsed.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefused(f"only http(s) and data URLs are accepted, not {scheme or 'a bare path'}")
    host = parsed.hostname
    if not host:
        raise UrlRefused("the URL has no host")
    try:
        port = parsed.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise UrlRefused("the URL's port is not valid") from None
    return scheme, host, port


def check_addresses(host: str, port: int, addresses: Iterable[str], policy: UrlPolicy) -> None:
    """`UrlRefused` unless every address `host` resolved to may be connected to."""
    if policy.allow_private or policy.host_allowed(host, port):
        return
    found = False
    for address in addresses:
        found = True
        why = address_refusal(address, policy)
        if why is not None:
            raise UrlRefused(f"{host} resolves to {why}; such URLs are refused")
    if not found:
        raise UrlRefused(f"{host} does not resolve")


def check_url(url: str, policy: UrlPolicy) -> None:
    """`UrlRefused` unless `url` may be fetched under `policy` (resolving its host, blocking)."""
    _, host, port = split_url(url)
    if policy.allow_private or policy.host_allowed(host, port):
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise UrlRefused(f"{host} does not resolve") from None
    check_addresses(host, port, [str(i[4][0]) for i in infos], policy)


class GuardedBackend(httpcore.NetworkBackend):
    """An httpcore network backend that checks the address it connects to against the policy (at connect time,
    so a host that resolves differently later cannot smuggle a private address in)."""

    def __init__(self, policy: UrlPolicy) -> None:
        self.policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if self.policy.allow_private or self.policy.host_allowed(host, port):
            return self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise UrlRefused(f"{host} does not resolve") from None
        addresses = [str(i[4][0]) for i in infos]
        check_addresses(host, port, addresses, self.policy)
        # Connect to the address just checked, not to the name (which could resolve anew).
        return self._inner.connect_tcp(addresses[0], port, timeout, local_address, socket_options)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise UrlRefused("unix sockets are refused")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)
