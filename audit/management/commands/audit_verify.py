"""``manage.py audit_verify``: walk the audit hash chain and report the first broken link."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.chain import GENESIS_HASH
from audit.models import AuditChainHead
from audit.verification import audit_chain_verify


class Command(BaseCommand):
    help = (
        "Verify the audit log's keyed hash chain (from genesis or the newest signed retention "
        "checkpoint) and its signed head; exit 1 at the first broken link: an edited, deleted, "
        "inserted or unsigned row, a forged checkpoint or a moved head."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = audit_chain_verify()
        if not result.ok:
            raise CommandError(
                f"audit chain broken at event {result.broken_at} ({result.kind}): "
                f"{result.reason}; {result.checked} events verified before it"
            )
        start = "genesis" if result.anchor == GENESIS_HASH else f"checkpoint {result.anchor[:16]}…"
        # The head hash is what to keep outside the database: a later run must reach it.
        head = AuditChainHead.objects.filter(pk=1).values_list("last_hash", flat=True).first()
        self.stdout.write(
            self.style.SUCCESS(
                f"audit chain intact ({result.checked} events, from {start}); "
                f"head {head or GENESIS_HASH}"
            )
        )
