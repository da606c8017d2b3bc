"""``manage.py demo_fleet``: the living demo fleet of ``make run`` (emulators only).

Seeds the emulated instances once (emulators/demo.py; idempotent), indexes the main one with a
first pass, makes a few changes outside the portal and runs a second pass, so the overview,
the lists and the drift have something to show. ``make run`` (scripts/dev.py) starts it in the
background once the web server is up; progress goes to stdout (``demo fleet: …`` lines) and to
``var/demo-fleet.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from emulators.demo import DemoTarget, is_seeded, outside_changes, seed

#: The instance the demo fills and indexes (the emulated portal app may read it); the others
#: get a small fleet, indexed when a user presses Refresh.
MAIN = "dps-fleet-prod"
SMALL_SCALE = 0.04


class Command(BaseCommand):
    help = "Seed the emulators with the demo fleet (once) and index it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--endpoints", default=None, help="endpoints.json of the emulators")
        parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 5,000 enrollments")
        parser.add_argument("--status-file", default=None, help="where progress is written")
        parser.add_argument("--no-sync", action="store_true", help="seed only")

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["endpoints"] or getattr(settings, "EMULATOR_ENDPOINTS_FILE", None)
        if not path or not Path(path).is_file():
            raise CommandError("no emulators' endpoints.json: the demo fleet needs the emulators")
        endpoints = json.loads(Path(path).read_text())
        status = Path(options["status_file"]) if options["status_file"] else None
        started = time.monotonic()

        def progress(message: str) -> None:
            self.stdout.write(f"demo fleet: {message}")
            if status is not None:
                status.write_text(json.dumps({"message": message, "at": time.time()}))

        main = DemoTarget.from_endpoints(endpoints, MAIN)
        fresh = not is_seeded(main)
        counts = seed(main, scale=options["scale"], progress=progress)
        for entry in endpoints["dps"]:
            if entry["name"] != MAIN:
                other = DemoTarget.from_endpoints(endpoints, entry["name"])
                seed(other, scale=options["scale"] * SMALL_SCALE, progress=lambda _m: None)
        if not options["no_sync"]:
            self._index(main if fresh else None, progress)
        progress(
            f"ready in {time.monotonic() - started:.0f} s ({counts.enrollments} enrollments, "
            f"{counts.registrations} devices seeded this run)"
        )

    def _index(self, changed: DemoTarget | None, progress: Any) -> None:
        """Run a first pass; after a fresh seed, change records outside and pass again."""
        from fleet.models import SyncState
        from instances.models import DpsInstance

        instance = DpsInstance.objects.filter(name=MAIN).first()
        if instance is None:
            progress(f"{MAIN} is not registered: nothing indexed")
            return
        if (
            changed is None
            and SyncState.objects.filter(instance=instance, finished_at__isnull=False).exists()
        ):
            return
        progress("first pass of the fleet index")
        _pass(instance.pk, progress)
        if changed is not None:
            outside_changes(changed, progress=progress)
            progress("second pass: the changes show as drift")
            _pass(instance.pk, progress)


def _pass(instance_id: int, progress: Any, *, wait: float = 600.0) -> None:
    """Run a pass; while a worker holds one (queued at registration), wait for it to end."""
    from fleet.sync import PassBusy, sync_instance

    deadline = time.monotonic() + wait
    while True:
        try:
            sync_instance(instance_id)
            return
        except PassBusy:
            if time.monotonic() > deadline:
                progress("a worker still holds the pass: the next scheduled pass will index it")
                return
            time.sleep(2)
