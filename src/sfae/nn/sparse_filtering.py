"""Sparse filtering (Ngiam et al., NIPS 2011) as a differentiable cost on a feature batch."""

from keras import ops


def soft_absolute(x, epsilon=1e-8):
    """sqrt(x^2 + epsilon): |x| with a smooth, nonzero-gradient bottom."""
    return ops.sqrt(ops.square(x) + epsilon)


def sparse_filtering_loss(features, activation="softabs", epsilon=1e-8):
    """Sparse filtering cost of a (batch, k) feature matrix F, as a scalar.

        A     = act(F)                  act = sqrt(F^2 + eps) ("softabs") or ELU ("elu")
        A~    = A / ||A||_2 over batch  each feature (column) to unit norm
        A^    = A~ / ||A~||_2 over k    then each example (row) to unit norm
        cost  = mean(A^)

    Ngiam sums A^ (its L1 norm); the mean is that sum divided by batch * k.
    epsilon also guards the two normalisations against division by zero.
    """
    if activation == "softabs":
        activated = soft_absolute(features, epsilon)
    elif activation == "elu":
        activated = ops.elu(features)
    else:
        raise ValueError(f"activation must be 'softabs' or 'elu', got {activation!r}")
    per_feature = activated / ops.sqrt(
        ops.sum(ops.square(activated), axis=0, keepdims=True) + epsilon
    )
    per_example = per_feature / ops.sqrt(
        ops.sum(ops.square(per_feature), axis=1, keepdims=True) + epsilon
    )
    return ops.mean(per_example)
