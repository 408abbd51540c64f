"""Bundled sample photos (see samples/CREDITS.md)."""
