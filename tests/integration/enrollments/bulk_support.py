"""A bulk access backend for tests and benchmarks: the emulator through its owner SAS key.

Configured from the environment so a subprocess worker uses it too: ``BULK_TEST_DPS`` holds
JSON ``{instance name: connection string}`` plus ``"_ca"``; ``BULK_TEST_CAPS`` the capability
names (all when unset); while the file named by ``BULK_TEST_REAUTH_FLAG`` exists, every token
request raises ReauthRequired, as an expired sign-in does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from authn.exceptions import ReauthRequired
from enrollments.dps.auth import parse_connection_string, sas_token_provider
from enrollments.dps.client import DpsClient

ALL_CAPS = frozenset(
    {
        "enrollments.read",
        "enrollments.write",
        "enrollments.delete",
        "registrations.read",
        "registrations.delete",
        "attestation.reveal",
    }
)


def _check() -> None:
    flag = os.environ.get("BULK_TEST_REAUTH_FLAG")
    if flag and Path(flag).exists():
        raise ReauthRequired("invalid_grant")


class EmulatorAccess:
    """Reach the emulator with SAS; capabilities and sign-in expiry from the environment."""

    def client(self, *, owner: Any, instance: Any) -> DpsClient:
        config = json.loads(os.environ["BULK_TEST_DPS"])
        cs = parse_connection_string(config[instance.name])
        sas = sas_token_provider(cs.host, cs.policy_name, cs.key)

        def provide() -> str:
            _check()
            return sas()

        return DpsClient(
            instance.host, provide, ca_bundle=config["_ca"], timeout=(3, 3), max_retries=0
        )

    def capabilities(self, *, owner: Any, instance: Any) -> frozenset[str]:
        _check()
        caps = os.environ.get("BULK_TEST_CAPS")
        return frozenset(c for c in caps.split(",") if c) if caps is not None else ALL_CAPS

    def check_signin(self, *, owner: Any, instance: Any) -> None:
        _check()
