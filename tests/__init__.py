"""The test suite: run with ``python -m twisted.trial tests``."""

from hypothesis import HealthCheck, settings

# Machines running the suite may be busy: no per-example deadline, no speed health check.
settings.register_profile("rendezvous", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("rendezvous")
