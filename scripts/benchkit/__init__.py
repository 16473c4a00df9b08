"""The pieces of `scripts/bench.py`: the audience it writes, the processes it runs and
watches, the broadcast and latency probe it times, and the per-message baseline."""
