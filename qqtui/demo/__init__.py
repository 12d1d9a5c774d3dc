"""Sample agents and the set `qqtui demo` queues; see `catalog.demo_runs()`."""
