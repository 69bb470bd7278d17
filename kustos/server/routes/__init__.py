"""Handlers of the non-engine API: ``sys/*`` (:mod:`.system`) and ``auth/token/*`` (:mod:`.tokens`)."""
