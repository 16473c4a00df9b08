"""The path of a notification, in the order it travels.

accept → planning (the I/O) around policy (the pure rules), caps
and counters → content → delivery → scheduler (releases held work, recovers stalled
work) → receipts (what comes back).
"""
