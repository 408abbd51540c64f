"""Shipped model weights (installed as the ``sccodec.weights`` package; data only)."""
