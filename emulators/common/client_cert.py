"""TLS client certificates for the DPS emulator's device API (X.509 attestation).

A DPS server asks every client for a certificate (``CERT_OPTIONAL``) and trusts, as issuers,
the CA certificates the ARM emulator has marked verified for that instance: they are loaded
into the server's SSL context when they become verified (and at start-up). The device's leaf
certificate is put in each request's ``scope["state"]`` under :data:`CLIENT_CERT_STATE` (DER).

Difference from DPS: a certificate whose issuer is not trusted fails the TLS handshake here,
where DPS would complete it and answer 401. A CA once loaded stays trusted by TLS until the
server restarts, so the device API checks the issuer against the verified CAs again.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

CLIENT_CERT_STATE = "tls_client_cert_der"


class ClientCertHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, adding the client's certificate to the requests' state."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            # A copy: app_state is shared by every connection of the server.
            self.app_state = {**self.app_state, CLIENT_CERT_STATE: der}


def trusting_context_factory(
    resource_id: str,
    verified_pems: Callable[[], list[str]],
    hooks: list[Callable[[str, str], None]],
) -> Callable[[Any, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
    """Return a uvicorn ``ssl_context_factory`` trusting the instance's verified CAs."""

    def factory(_config: Any, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        context = default()
        context.verify_mode = ssl.CERT_OPTIONAL
        for pem in verified_pems():
            context.load_verify_locations(cadata=pem)

        def trust(verified_resource_id: str, pem: str) -> None:
            if verified_resource_id.lower() == resource_id.lower():
                context.load_verify_locations(cadata=pem)

        hooks.append(trust)
        return context

    return factory
