"""What every emulator app is built from: the tenant, keys, TLS files and public URLs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulators.common.ca import TlsFiles
from emulators.common.keys import KeyStore
from emulators.common.tenant import Tenant

DPS_AUDIENCE = "https://azure-devices-provisioning.net"
ARM_AUDIENCES = ("https://management.azure.com", "https://management.core.windows.net/")


@dataclass
class EmulatorContext:
    """Shared, mostly read-only state handed to each app factory."""

    state_dir: Path
    tenant: Tenant
    keys: KeyStore
    tls: TlsFiles
    host: str
    entra_url: str = ""  # https://host:port, no trailing slash
    arm_url: str = ""
    dps_hosts: dict[str, str] = field(default_factory=dict)  # DPS name -> host:port
    # The ARM emulator's CA certificates (emulators.arm.certificates.CertificateStore), and
    # what to call when one becomes verified: (DPS resource id, PEM).
    arm_certificates: Any = None
    ca_verified_hooks: list[Callable[[str, str], None]] = field(default_factory=list)

    @property
    def authority(self) -> str:
        return f"{self.entra_url}/{self.tenant.tenant_id}"

    @property
    def v1_issuer(self) -> str:
        # Microsoft first-party resources (DPS, ARM, Graph) receive v1 tokens, as in Entra.
        return f"https://sts.windows.net/{self.tenant.tenant_id}/"

    @property
    def v2_issuer(self) -> str:
        return f"{self.authority}/v2.0"
