"""Build the security pieces from settings: registry, token issuer, authenticator, mode check."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from service.logging import get_logger
from service.security.clients import ClientRegistry
from service.security.guard import Authenticator, load_trusted
from service.security.tokens import TokenIssuer, load_or_create_key
from service.settings import Settings

log = get_logger(__name__)


class AuthModeRefused(RuntimeError):
    """Auth is off while the service would listen on a non-loopback address."""


@dataclass(frozen=True)
class Security:
    """What the auth routes and the guard use."""

    on: bool
    base_url: str
    registry: ClientRegistry
    issuer: TokenIssuer
    authenticator: Authenticator

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/auth/token"


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_mode(settings: Settings, host: str) -> None:
    """Refuse auth `off` on anything but a loopback address; say loudly that it is off."""
    if settings.auth == "on":
        return
    if not is_loopback(host):
        raise AuthModeRefused(
            f"SKINSCREEN_AUTH=off is only allowed on a loopback address, not {host}: "
            "set SKINSCREEN_AUTH=on and register clients (skinscreen clients add …)"
        )
    log.warning("auth_off", detail="anyone who can reach this loopback port can use the service")


def build_security(settings: Settings) -> Security:
    """The registry (clients file), our signing key (generated at first start), the issuer."""
    base = (settings.public_base_url or f"http://{settings.host}:{settings.port}").rstrip("/")
    registry = ClientRegistry(settings.clients_file or settings.data_dir / "clients.json")
    key = load_or_create_key(settings.signing_key_path or settings.data_dir / "signing-key.pem")
    issuer = TokenIssuer(key, base, settings.token_lifetime_s)
    on = settings.auth == "on"
    authenticator = Authenticator(
        on, registry, issuer, load_trusted(settings.trusted_issuers), settings.rate_limit_per_minute
    )
    return Security(on, base, registry, issuer, authenticator)
