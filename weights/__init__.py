"""Shipped model weights (installed as the ``sccodec_weights`` package; data only)."""
