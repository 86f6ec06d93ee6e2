"""The generation service: an HTTP API (``noisecraft serve``), a job store and workers (``noisecraft worker``).

Every model comes from the modality registry and every parameter from the pipeline protocol, so each registered
modality is served with no change here. ``create_app(ServiceConfig(...))`` builds the FastAPI app; the store
(:mod:`noisecraft.service.store`) is SQLite in ``--data-dir`` by default or PostgreSQL by ``--database URL``.
Needs the ``serve`` extra: ``pip install 'noisecraft[serve]'``.
"""

from __future__ import annotations

__all__ = ["ServiceConfig", "create_app"]


def __getattr__(name: str):
    if name in __all__:
        from noisecraft.service import app

        return getattr(app, name)
    raise AttributeError(name)
