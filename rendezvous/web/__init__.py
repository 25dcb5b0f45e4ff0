"""``--web``: a live status page, and static files (the browser example) beside it."""
