"""The training loop on the JAX backend (the GPU machines have JAX, not TensorFlow)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = """
import dataclasses, json, sys
from pathlib import Path
import keras
import numpy as np
from fit_loops import plain_fit, project_fit
from sfae.nn.regularisers.registry import load_config

config = load_config(Path(sys.argv[1]) / "params.yaml")
rng = np.random.default_rng(3)
images = rng.random((10, 32, 32, 3), dtype=np.float32)
masks = np.zeros((10, 32, 32, 1), np.float32)
masks[:, 8:24, 12:20] = 1.0
result = {"backend": keras.backend.backend()}
# Every code path in one variant, as each costs its compiles: sparse_elu's sparse term and
# pretraining plus l2's kernel penalty (pure adds no path of its own).
variants = {"l2_sparse_elu": config.variants["sparse_elu"].model_copy(
    update={"penalty": config.variants["l2"].penalty}
)}
for variant, settings in variants.items():
    tiny = dataclasses.replace(
        config, variant=settings, data=dataclasses.replace(config.data, image_size=32)
    )
    plain, _, plain_model = plain_fit(tiny, images, masks, 3, shuffle=False)
    project, _, project_model = project_fit(tiny, images, masks, 3, shuffle=False)
    gap = max(
        float(np.abs(a - b).max())
        for a, b in zip(plain_model.get_weights(), project_model.get_weights(), strict=True)
    )
    result[variant] = {"plain": list(map(float, plain)), "project": project, "weights": gap}
    result[variant]["units"] = [type(unit).__name__ for unit in settings.regularisers]
    result[variant]["penalties"] = len(project_model.losses)
print(json.dumps(result))
"""


def pythonpath(folder) -> str:
    return os.pathsep.join([str(folder), *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture(scope="module")
def jax_run(repo_root):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(repo_root)],
        env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": pythonpath(repo_root / "bench")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_it_really_ran_on_jax(jax_run):
    assert jax_run["backend"] == "jax"


def test_jax_loop_matches_plain_fit_and_learns(jax_run):
    run = jax_run["l2_sparse_elu"]
    assert run["units"] == ["Penalty", "Sparse"] and run["penalties"] > 0
    np.testing.assert_allclose(run["project"], run["plain"], rtol=2e-4)
    assert run["weights"] < 1e-4
    assert run["project"][-1] < run["project"][0]
