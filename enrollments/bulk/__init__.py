"""Bulk jobs: CSV import, export and bulk delete, run by Celery workers (docs/architecture.md, "The import path")."""
