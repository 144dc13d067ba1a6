"""logsig: shared pieces of the agents, the gateway and the workers.

Only code that two components need lives here: settings, the Forward protocol codec,
the gateway-to-worker batch format and the Redis key schema.
"""

__version__ = "0.1.0"
