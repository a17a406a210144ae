"""The chaos suite: the system's promises checked at once, at scale, under the faults
production has, on real processes and signals.

- ``test_chaos.py`` — the run and its one table (``AIJOBS_CHAOS_SEED`` picks it).
- ``run.py`` — one run from start to end: submit, read, inject, wait, gather, audit.
- ``cluster.py`` — the stack: Redis behind a Sentinel, the chaos simulator, ``aijobs api``,
  a supervised fleet of ``aijobs worker`` processes.
- ``redis_ha.py`` — master + replica + Sentinel, and how they fail (AOF restart, empty
  restart, failover to a lagging replica).
- ``faults.py`` — the seeded fault schedule and the threads that carry it out.
- ``workload.py`` — the seeded jobs, their request keys, and their expected outputs.
- ``readers.py`` — SSE and WebSocket readers that drop and resume at random.
- ``audit.py`` — the checks and the table; ``test_audit.py`` checks the checks.
- ``test_worker_survives_redis_outage.py`` — a focused repro of a fault the run found.
"""
