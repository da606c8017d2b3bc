"""``manage.py portal_doctor [--user UPN]``: check this deployment and say what to fix."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.doctor import Level, diagnose


class Command(BaseCommand):
    help = (
        "Check settings, Entra ID (discovery, the portal's credential, on-behalf-of tokens of a "
        "signed-in user), each DPS instance (host rules, TLS, reachability, the app's read for "
        "the fleet index) and the clock; print what to fix. Exit 1 when anything failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--user",
            metavar="UPN",
            help="also exchange this signed-in user's token for DPS and ARM tokens (OBO)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        findings = diagnose(user=options.get("user"))
        for finding in findings:
            style = {
                Level.OK: self.style.SUCCESS,
                Level.WARN: self.style.WARNING,
                Level.FAIL: self.style.ERROR,
            }[finding.level]
            self.stdout.write(style(finding.line()))
        failed = sum(f.level is Level.FAIL for f in findings)
        warned = sum(f.level is Level.WARN for f in findings)
        summary = f"{failed} failed, {warned} warnings, {len(findings) - failed - warned} ok"
        if failed:
            raise CommandError(summary, returncode=1)
        self.stdout.write(summary)
