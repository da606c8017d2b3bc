"""``manage.py dps_instance_import --from-endpoints PATH``: register the emulators' DPS instances."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from instances.services import dps_instance_upsert


class Command(BaseCommand):
    help = "Register (idempotently) the DPS instances listed in an endpoints.json file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from-endpoints", required=True, metavar="PATH")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["from_endpoints"])
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        entries = data.get("dps") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise CommandError(f"{path} has no 'dps' list")
        for entry in entries:
            try:
                instance, created = dps_instance_upsert(
                    actor=None,
                    name=str(entry["name"]),
                    host=str(entry["host"]),
                    resource_id=str(entry["resource_id"]),
                    enabled=True,
                )
            except (KeyError, TypeError) as exc:
                raise CommandError(f"{path}: an entry lacks name, host or resource_id") from exc
            except ValidationError as exc:
                raise CommandError(
                    f"{path}: {entry.get('name')}: {' '.join(exc.messages)}"
                ) from exc
            verb = "registered" if created else "up to date or updated"
            # No user, so no ARM token: the host is compared with ARM's when a user's
            # permissions on the instance are next read.
            self.stdout.write(f"{instance.name}: {verb} ({instance.host})")
