"""``manage.py fleet_report``: print what needs attention, for cron and monitoring.

Exit codes (fleet.report.ExitCode): 0 nothing to report; 1 certificates expiring within
``--within`` or other items needing attention; 2 at least one certificate expired; 3 the report
could not be made (unknown instance, bad ``--within``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from fleet.report import FIELDS, ExitCode, Item, exit_code, report
from instances.models import DpsInstance

_WITHIN = re.compile(r"^(\d+)([dh]?)$")


def parse_within(text: str) -> dt.timedelta:
    """Return ``30d`` / ``12h`` / ``30`` (days) as a time span."""
    match = _WITHIN.match(text.strip())
    if not match:
        raise CommandError(
            f"--within: write days as 30d or hours as 12h, not {text!r}", returncode=ExitCode.ERROR
        )
    n, unit = int(match.group(1)), match.group(2) or "d"
    return dt.timedelta(hours=n) if unit == "h" else dt.timedelta(days=n)


def _text(items: list[Item], out: Any) -> None:
    if not items:
        out.write("Nothing needs attention.\n")
        return
    for i in items:
        when = f" ({i.at})" if i.at else ""
        out.write(f"{i.instance}\t{i.item}\t{i.kind} {i.id}: {i.detail}{when}\n")


def _csv(items: list[Item]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(i.as_dict() for i in items)
    return out.getvalue()


class Command(BaseCommand):
    help = "Print what needs attention in the fleet index; the exit code says whether anything expired."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--instance",
            action="append",
            default=[],
            help="a DPS instance (repeatable; default: all enabled)",
        )
        parser.add_argument(
            "--within",
            default="30d",
            help="certificates expiring within this (30d, 12h); default 30d",
        )
        parser.add_argument("--format", choices=("text", "json", "csv"), default="text")

    def handle(self, *args: Any, **options: Any) -> None:
        within = parse_within(options["within"])
        instances = DpsInstance.objects.filter(enabled=True).order_by("name")
        if options["instance"]:
            instances = instances.filter(name__in=options["instance"])
            missing = set(options["instance"]) - set(instances.values_list("name", flat=True))
            if missing:
                raise CommandError(
                    f"No enabled DPS instance named {', '.join(sorted(missing))}.",
                    returncode=ExitCode.ERROR,
                )
        items = report(instances, within=within, never_days=settings.FLEET_NEVER_REGISTERED_DAYS)
        fmt = options["format"]
        if fmt == "json":
            self.stdout.write(json.dumps([i.as_dict() for i in items], indent=2))
        elif fmt == "csv":
            self.stdout.write(_csv(items), ending="")
        else:
            _text(items, self.stdout)
        code = exit_code(items)
        if code:
            self.stdout.flush()
            sys.exit(int(code))
