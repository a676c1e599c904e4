"""Many experiments: seeds, sweeps, the claims table, running them in parallel or on a cluster."""
