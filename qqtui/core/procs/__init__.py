"""Process control, by job: `pids` (identity, verified signals), `spawn` (a run
through its shim), `kill` (a run's whole tree, TERM then KILL), `scan` (/proc trees
for display)."""
