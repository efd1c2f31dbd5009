"""Where a webhook may go. A URL is http(s) with a host and no credentials; every address its
host resolves to must be public (global), or inside VQUEUE_WEBHOOK_ALLOWED_NETWORKS, so a
caller cannot make the service reach its own network (SSRF). Deliveries connect to the address
checked here, not to a second lookup, so a DNS answer that changes in between gains nothing."""

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from vqueue.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_URL_CHARS = 2048
# How a refused address is named, most telling first (a loopback address is private too).
KINDS = (
    ("loopback", "a loopback address"),
    ("unspecified", "the unspecified address"),
    ("link_local", "a link-local address"),
    ("multicast", "a multicast address"),
    ("private", "a private address"),
    ("reserved", "a reserved address"),
)


class DestinationRefused(Exception):
    """The message says why, for the caller's 400 or the delivery's log."""


@dataclass(frozen=True)
class DestinationPolicy:
    networks: tuple[IPNetwork, ...] = ()
    hosts: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> "DestinationPolicy":
        networks = (
            ipaddress.ip_network(net.strip(), strict=False)
            for net in settings.webhook_allowed_networks.split(",")
            if net.strip()
        )
        hosts = (
            host.strip().lower()
            for host in settings.webhook_allowed_hosts.split(",")
            if host.strip()
        )
        return cls(tuple(networks), tuple(hosts))

    def allows_host(self, host: str) -> bool:
        if not self.hosts:
            return True
        return any(
            host == allowed or (allowed.startswith(".") and host.endswith(allowed))
            for allowed in self.hosts
        )

    def refusal(self, address: IPAddress) -> str | None:
        """Why a connection to `address` is not allowed, or None."""
        if any(address in network for network in self.networks):
            return None
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            return self.refusal(mapped)
        for kind, named in KINDS:
            if getattr(address, f"is_{kind}"):
                return f"{address} is {named}"
        # Older Pythons take multicast and 0.0.0.0/8 for global: those are named above.
        return None if address.is_global else f"{address} is not a public address"


def parse_url(url: str) -> SplitResult:
    """The URL's parts, or ValueError saying what is wrong with it."""
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"must be at most {MAX_URL_CHARS} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http or https URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials (user:password@)")
    if any(char.isspace() or ord(char) < 32 for char in url):
        raise ValueError("must not contain whitespace or control characters")
    try:
        parts.port  # noqa: B018 (a port out of range raises here)
    except ValueError:
        raise ValueError("has a port that is not a number from 0 to 65535") from None
    return parts


async def resolve(url: str, policy: DestinationPolicy) -> IPAddress:
    """The address to connect to for `url`, or DestinationRefused. Every address the host
    resolves to must be allowed: a name that also points inside is refused whole."""
    try:
        parts = parse_url(url)
    except ValueError as exc:
        raise DestinationRefused(f"the URL {exc}") from None
    host = parts.hostname or ""
    if not policy.allows_host(host):
        raise DestinationRefused(f"{host} is not in VQUEUE_WEBHOOK_ALLOWED_HOSTS")
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = await _lookup(host, parts.port or (443 if parts.scheme == "https" else 80))
    for address in addresses:
        if (why := policy.refusal(address)) is not None:
            raise DestinationRefused(f"{host} may not be reached: {why}")
    return addresses[0]


async def _lookup(host: str, port: int) -> list[IPAddress]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DestinationRefused(f"{host} does not resolve: {exc}") from None
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in found:
            found.append(address)
    if not found:
        raise DestinationRefused(f"{host} does not resolve")
    return found
