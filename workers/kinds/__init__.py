"""The job kinds, as plain functions against the provider interface (no Celery here)."""
