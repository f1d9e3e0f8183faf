"""Storage backends: memory, Redis and the outage fallback around them."""

from __future__ import annotations
