"""The scanning workers: rules, engines, the Celery task and the Redis result store.

Flow per batch: :mod:`.tasks` decodes it, :mod:`.engine` scans all its lines at once,
:mod:`.aggregate` turns matches into per-chunk deltas and :mod:`.store` applies them in one
Redis round trip. :mod:`.worker` runs it all under Celery; :mod:`.results` reads it back.
"""
