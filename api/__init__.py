"""aijobs HTTP API: the thin layer that accepts jobs and streams their events.

It never imports Celery task functions, ``openai`` or provider code: it writes
the job row, enqueues the task by name with the job id, and reads events.
"""
