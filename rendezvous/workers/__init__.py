"""Worker processes: the live dialect's raw listeners served on every core.

With ``--workers N`` the daemon's main process keeps the store (the hub) and hands each
connection accepted on a ``tcp:`` or ``unix:`` listener to one of N worker processes,
which parse, answer and push; the hub runs every request against the one registry and
sends each worker, per announcement, the list of its sessions to push it to.
"""
