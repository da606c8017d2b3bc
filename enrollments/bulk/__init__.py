"""Bulk jobs: CSV import, export and bulk delete, run by Celery workers (DESIGN.md §7)."""
