"""Sparse filtering (Ngiam et al., NIPS 2011) as a differentiable cost on a feature batch."""

from keras import ops


def soft_absolute(x, epsilon=1e-8):
    """sqrt(x^2 + epsilon): |x| with a smooth, nonzero-gradient bottom."""
    return ops.sqrt(ops.square(x) + epsilon)


def sparse_filtering_loss(features, activation="softabs", epsilon=1e-8):
    """mean(A^) of a (batch, k) feature matrix F: A = soft_absolute(F) or elu(F) (activation
    "softabs" or "elu"), each feature (column) of A to unit L2 norm over the batch, then each
    example (row) over k. Ngiam sums A^, the mean divides by batch * k; epsilon also guards the
    two normalisations against division by zero."""
    if activation not in ("softabs", "elu"):
        raise ValueError(f"activation must be 'softabs' or 'elu', got {activation!r}")
    activated = soft_absolute(features, epsilon) if activation == "softabs" else ops.elu(features)

    def unit_norm(a, axis):
        return a / ops.sqrt(ops.sum(ops.square(a), axis=axis, keepdims=True) + epsilon)

    return ops.mean(unit_norm(unit_norm(activated, 0), 1))  # features, then examples
