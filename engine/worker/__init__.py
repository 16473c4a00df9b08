"""Worker wiring: the broker and its queues, the actors (wiring only), the runtime.

A worker process builds its runtime once and serves the actors from some queues.
"""
