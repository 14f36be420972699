"""`lora-adapt serve`: an OpenAI-compatible server over many adapters on one base (FastAPI + uvicorn).

See ``app.py`` for the endpoints, ``batcher.py`` for how requests for different adapters share one
forward, ``limits.py`` and ``recipe/serving.py`` (ServeSpec) for the limits and their defaults."""

from __future__ import annotations

from .app import create_app
from .server import running, serve_forever

__all__ = ["create_app", "running", "serve_forever"]
