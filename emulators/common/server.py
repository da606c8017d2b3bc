"""Run the emulator apps over HTTPS with uvicorn, in the foreground or in a thread.

Sockets are bound before any app is built, so every app (and ``endpoints.json``) knows
the real ports even when port 0 asked for any free one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from emulators.common.ca import ensure_tls
from emulators.common.client_cert import ClientCertHttpProtocol, trusting_context_factory
from emulators.common.context import EmulatorContext
from emulators.common.keys import KeyStore
from emulators.common.rbac import permission_blocks
from emulators.common.tenant import Tenant, load_tenant

log = logging.getLogger("emulators")

#: Seconds a stopping server waits for requests in progress before closing every connection.
#: Idle keep-alive TLS connections never finish closing by themselves (the client does not
#: answer the TLS close while it sits idle), so the wait always ends by this deadline.
GRACEFUL_SHUTDOWN_SECONDS = 1.0


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the stack.

    Each ``uvicorn.Server`` takes SIGINT/SIGTERM for itself while it serves; with several in
    one process only the last one heard the signal, and the others kept serving their
    clients' keep-alive connections, so ``serve`` never exited on SIGTERM.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY only on such sockets, and without it
    # Nagle plus delayed ACKs add about 40 ms to every keep-alive request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class EmulatorStack:
    """The Entra ID, ARM and DPS emulators of one tenant, sharing a state directory."""

    def __init__(
        self,
        state_dir: Path | str,
        tenant_file: Path | str | None = None,
        host: str = "127.0.0.1",
        entra_port: int = 0,
        arm_port: int = 0,
        dps_port: int = 0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.tenant: Tenant = load_tenant(tenant_file)
        self.host = host
        self._ports = (entra_port, arm_port, dps_port)
        self._servers: list[uvicorn.Server] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.apps: dict[str, Any] = {}
        self.ctx = self._prepare()

    # -- building ------------------------------------------------------------
    def _prepare(self) -> EmulatorContext:
        tls = ensure_tls(self.state_dir)
        keys = KeyStore(self.state_dir)
        entra_port, arm_port, dps_port = self._ports
        self._sockets: dict[str, socket.socket] = {}
        self._sockets["entra"] = _bind(self.host, entra_port)
        self._sockets["arm"] = _bind(self.host, arm_port)
        for i, dps in enumerate(self.tenant.dps_instances):
            self._sockets[f"dps:{dps.name}"] = _bind(self.host, dps_port + i if dps_port else 0)
        h = _url_host(self.host)

        def port(name: str) -> int:
            return int(self._sockets[name].getsockname()[1])

        ctx = EmulatorContext(
            state_dir=self.state_dir,
            tenant=self.tenant,
            keys=keys,
            tls=tls,
            host=self.host,
            entra_url=f"https://{h}:{port('entra')}",
            arm_url=f"https://{h}:{port('arm')}",
            dps_hosts={d.name: f"{h}:{port('dps:' + d.name)}" for d in self.tenant.dps_instances},
        )
        # Imported here so that a half-written emulator does not break the others' tests.
        from emulators.arm.app import create_app as create_arm
        from emulators.dps.app import create_app as create_dps
        from emulators.entra.app import create_app as create_entra

        self.apps["entra"] = create_entra(ctx)
        self.apps["arm"] = create_arm(ctx)
        for d in self.tenant.dps_instances:
            self.apps[f"dps:{d.name}"] = create_dps(ctx, d)
        return ctx

    # -- endpoints.json ----------------------------------------------------------
    def endpoints(self) -> dict[str, Any]:
        """Return everything a client needs: CA, authority, ARM, DPS hosts, demo principals."""
        t, ctx = self.tenant, self.ctx

        def roles_at(principal: str) -> dict[str, str]:
            out: dict[str, str] = {}
            for d in t.dps_instances:
                names = []
                principals = {principal, *t.group_ids_of(principal)}
                scopes = {s.lower() for s in t.ancestor_scopes(d.resource_id)}
                for ra in t.role_assignments:
                    if ra.principal_id in principals and ra.scope.lower() in scopes:
                        role = t.role_definition(ra.role_definition_id)
                        if role and role.role_name not in names:
                            names.append(role.role_name)
                if names:
                    out[d.name] = " + ".join(sorted(names))
            return out

        def app_roles_of(principal: str) -> list[str]:
            return sorted({v for a in t.apps for v in a.role_assignments.get(principal, ())})

        dps_entries = []
        for d in t.dps_instances:
            owner = next(
                (p for p in d.access_policies if p.key_name == "provisioningserviceowner"),
                d.access_policies[0] if d.access_policies else None,
            )
            host = ctx.dps_hosts[d.name]
            dps_entries.append(
                {
                    "name": d.name,
                    "host": host,
                    "resource_id": d.resource_id,
                    "id_scope": d.id_scope,
                    "iot_hubs": [h.name for h in d.iot_hubs],
                    "connection_string": (
                        f"HostName={host};SharedAccessKeyName={owner.key_name};"
                        f"SharedAccessKey={owner.primary_key}"
                        if owner
                        else ""
                    ),
                }
            )
        return {
            "ca_cert": str(ctx.tls.ca_cert.resolve()),
            "tenant_id": t.tenant_id,
            "tenant_domain": t.domain,
            "authority": ctx.authority,
            "entra_endpoint": ctx.entra_url,
            "arm_endpoint": ctx.arm_url,
            "dps": dps_entries,
            "users": [
                {
                    "username": u.username,
                    "password": u.password,
                    "object_id": u.object_id,
                    "display_name": u.display_name,
                    "dps_roles": roles_at(u.object_id),
                    "app_roles": app_roles_of(u.object_id),
                }
                for u in t.users
            ],
            "apps": [
                {
                    "name": a.name,
                    "client_id": a.client_id,
                    "client_secret": a.client_secrets[0] if a.client_secrets else "",
                    "service_principal_id": a.service_principal_id,
                    "dps_roles": roles_at(a.service_principal_id),
                    "redirect_uris": list(a.redirect_uris),
                    "api_scopes": a.api_scope_uris,
                }
                for a in t.apps
            ],
        }

    def write_endpoints(self) -> Path:
        path = self.state_dir / "endpoints.json"
        tmp = path.with_suffix(".tmp")
        # endpoints.json holds demo passwords and secrets: owner-only.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.endpoints(), fh, indent=2)
        tmp.replace(path)
        return path

    def permissions(self, principal_id: str, scope: str) -> list[dict[str, list[str]]]:
        return permission_blocks(self.tenant, principal_id, scope)

    # -- serving -------------------------------------------------------------------
    def _make_servers(self) -> list[tuple[uvicorn.Server, socket.socket]]:
        pairs: list[tuple[uvicorn.Server, socket.socket]] = []
        for name, app in self.apps.items():
            config = uvicorn.Config(
                app,
                ssl_certfile=str(self.ctx.tls.server_cert),
                ssl_keyfile=str(self.ctx.tls.server_key),
                log_level=os.environ.get("EMULATOR_LOG_LEVEL", "warning"),
                access_log=os.environ.get("EMULATOR_ACCESS_LOG") == "1",
                lifespan="off",
                timeout_keep_alive=30,
                server_header=False,
                date_header=True,
                **self._client_cert_options(name),
            )
            server = _Server(config)
            pairs.append((server, self._sockets[name]))
        return pairs

    def _client_cert_options(self, name: str) -> dict[str, Any]:
        """A DPS server accepts device certificates issued by the instance's verified CAs."""
        if not name.startswith("dps:"):
            return {}
        dps = self.tenant.dps_by_name(name.removeprefix("dps:"))
        store = self.ctx.arm_certificates
        if dps is None or store is None:
            return {}
        resource_id = dps.resource_id
        return {
            "http": ClientCertHttpProtocol,
            "ssl_context_factory": trusting_context_factory(
                resource_id,
                lambda: [c.pem for c in store.verified(resource_id)],
                self.ctx.ca_verified_hooks,
            ),
        }

    async def _serve_all(self, install_signals: bool) -> None:
        pairs = self._make_servers()
        self._servers = [s for s, _ in pairs]
        if install_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._request_exit)
        tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in pairs]
        while not all(s.started for s in self._servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        self._started.set()
        await asyncio.gather(*tasks)

    def start(self) -> EmulatorStack:
        """Serve in a background thread; return once every server accepts connections."""

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve_all(install_signals=False))
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                self._error = exc
                self._started.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="emulators", daemon=True)
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("the emulators did not start within 30 s")
        if self._error:
            raise RuntimeError(f"the emulators failed to start: {self._error}") from self._error
        self.write_endpoints()
        return self

    def _request_exit(self) -> None:
        """Stop every server: requests in progress get a moment; a second signal stops at once."""
        if any(s.should_exit for s in self._servers):
            self._force_exit()
            return
        for server in self._servers:
            server.should_exit = True
        asyncio.get_running_loop().call_later(GRACEFUL_SHUTDOWN_SECONDS, self._force_exit)

    def _force_exit(self) -> None:
        for server in self._servers:
            server.force_exit = True

    def stop(self) -> None:
        for s in self._servers:
            s.should_exit = True
            # Idle keep-alive TLS connections of clients would otherwise hold the shutdown
            # until the join below times out (uvicorn waits for every connection to close).
            s.force_exit = True
        if self._thread:
            self._thread.join(10)
        for sock in self._sockets.values():
            sock.close()

    def serve_forever(self) -> None:
        """Serve in the foreground until SIGINT/SIGTERM."""
        self.write_endpoints()
        asyncio.run(self._serve_all(install_signals=True))

    def __enter__(self) -> EmulatorStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
