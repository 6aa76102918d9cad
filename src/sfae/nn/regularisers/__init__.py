"""Regularisers, one unit each (base.py says what a unit is; registry.py lists ours)."""
