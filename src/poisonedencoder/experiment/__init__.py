"""One experiment: its stages from poisoning inputs to metrics, its run folder and report."""
