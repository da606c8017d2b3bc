"""``manage.py audit_verify``: walk the audit hash chain and report the first broken link."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.chain import GENESIS_HASH
from audit.verification import audit_chain_verify


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chain (from genesis or the newest retention checkpoint); "
        "exit 1 at the first broken link: an edited, deleted or inserted row."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = audit_chain_verify()
        if not result.ok:
            raise CommandError(
                f"audit chain broken at event {result.broken_at} ({result.kind}): "
                f"{result.reason}; {result.checked} events verified before it"
            )
        start = "genesis" if result.anchor == GENESIS_HASH else f"checkpoint {result.anchor[:16]}…"
        self.stdout.write(
            self.style.SUCCESS(f"audit chain intact ({result.checked} events, from {start})")
        )
