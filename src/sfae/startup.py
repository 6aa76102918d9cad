"""Imported first by every script that runs the network: unless TF_CPP_MIN_LOG_LEVEL is set,
TensorFlow starts with stderr caught (cuInit, oneDNN lines read as errors), shown if it fails."""

import os
import sys
import tempfile


def quiet_tensorflow() -> None:
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "keras" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import keras  # noqa: F401  (with the TensorFlow backend: TensorFlow itself)

            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                tf.config.list_physical_devices()  # the CUDA probe prints here
        except BaseException:
            os.dup2(saved, 2)
            caught.seek(0)
            sys.stderr.write(caught.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


quiet_tensorflow()
