"""sfae: sparse-filtering auto-encoders, a reproducible study."""
