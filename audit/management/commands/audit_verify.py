"""``manage.py audit_verify``: walk the audit hash chain and report the first broken link."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.chain import chain_verify
from audit.models import AuditChainHead, AuditEvent


class Command(BaseCommand):
    help = "Verify the audit log's hash chain; exit 1 at the first broken link."

    def handle(self, *args: Any, **options: Any) -> None:
        head = AuditChainHead.objects.filter(pk=1).first()
        events = AuditEvent.objects.order_by("id").iterator(chunk_size=2000)
        broken = chain_verify(events, last_hash=head.last_hash if head else None)
        count = AuditEvent.objects.count()
        if broken:
            raise CommandError(f"audit chain broken at event {broken.event_id}: {broken.reason}")
        self.stdout.write(self.style.SUCCESS(f"audit chain intact ({count} events)"))
