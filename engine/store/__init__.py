"""The store: what Tidings keeps and reads.

SQL tables, sessions, bulk writes, the SQLite write queue, leases and locks, the
installation's secrets, and every Redis key.
"""
