"""``manage.py audit_retention``: the only way audit events are ever deleted."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.retention import audit_retention_apply


class Command(BaseCommand):
    help = (
        "Delete audit events older than --older-than days (default AUDIT_RETENTION_DAYS) and "
        "append a checkpoint event so audit_verify still passes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=int,
            dest="older_than",
            default=None,
            metavar="DAYS",
            help="age in days; defaults to the AUDIT_RETENTION_DAYS setting",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than"]
        if days is None:
            days = settings.AUDIT_RETENTION_DAYS
        if days < 1:
            raise CommandError("--older-than must be at least 1 day")
        result = audit_retention_apply(older_than_days=days)
        self.stdout.write(
            self.style.SUCCESS(
                f"deleted {result.deleted} audit events older than {days} days; "
                f"checkpoint {result.checkpoint_id} continues from {result.continues_from[:16]}…"
            )
        )
