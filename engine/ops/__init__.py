"""Operations: the `tidings` CLI, status, stats, the supervisor and the demo.

Also the metrics exporter of a worker group.
"""
