"""Completion callbacks: when a job ends, POST it to its webhook URL, signed per Standard
Webhooks, from a durable outbox in SQL.

- ``urls``: which URLs and addresses may be called (checked at submit and at delivery).
- ``signing``: the ``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature`` headers.
- ``outbox``: the table's rows — written in the job's terminal transaction, claimed,
  recorded — and the ``webhook`` view of a job's deliveries.
- ``transport``: one POST to a checked, pinned address, under a total deadline.
- ``sender``: the loop in every worker process that delivers what is due.

This package's ``__init__`` imports nothing, so settings and the store can import its
small modules without pulling in the rest.
"""
