"""sfae: sparse-filtering auto-encoders, a reproducible study."""

import os

# TensorFlow's C++ start-up chatter (CUDA probes, CPU features) buries the stages' own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
