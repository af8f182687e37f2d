"""A tripwire on the trainer's numerics: the shard store reuses stored models whenever the
experiment identity matches, so a trainer that now computes other numbers must come with a
new ``STORE_FORMAT`` (which moves new shards to another store folder). These outputs were
recorded under ``RECORDED_FORMAT``; if they no longer come out, bump the format and re-record.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from longtail.nets.config import TrainConfig
from longtail.nets.ensemble import train_ensemble
from longtail.study import STORE_FORMAT

RECORDED_FORMAT = 3
# Two models (ids 0 and 5) on the first 300 sklearn digits, evaluated on the next 6: test
# true-label probabilities (2, 6) and per-epoch training losses (2, 2), as recorded.
REFERENCE = {
    ("mlp", "fp64"): (
        [[0.07214358, 0.06957549, 0.08907428, 0.09371723, 0.2024653, 0.24220121],
         [0.11797962, 0.12568761, 0.10138071, 0.12097024, 0.11552856, 0.11192745]],
        [[2.28948426, 2.11100984], [2.30458736, 2.14208221]],
    ),
    ("cnn", "fp64"): (
        [[0.41054064, 0.25600281, 0.17531724, 0.18515189, 0.34945387, 0.51446652],
         [0.68978047, 0.28504476, 0.52621484, 0.13009858, 0.36138234, 0.63127595]],
        [[1.770239, 0.56679195], [1.53797579, 0.38759431]],
    ),
    ("mlp", "fp32"): (
        [[0.07214357, 0.06957549, 0.08907429, 0.09371723, 0.20246533, 0.24220121],
         [0.11797962, 0.12568761, 0.10138071, 0.12097025, 0.11552855, 0.11192745]],
        [[2.28948426, 2.11100984], [2.3045876, 2.14208198]],
    ),
}
# fp64: rounding differences between CPUs (~1e-16) stay far below 1e-6; the outputs are stored
# as float32 (~6e-8 resolution). fp32 mlp (no max-pool near-ties to flip): ~1e-7 rounding
# per operation over 20 steps stays below 1e-5. A changed initialisation, data order, loss or
# optimiser step moves these numbers by > 1e-3.
TOLERANCE = {"fp64": 1e-6, "fp32": 1e-5}


@pytest.mark.parametrize(("model", "precision"), list(REFERENCE))
def test_the_trainer_still_computes_the_recorded_numbers(model: str, precision: str) -> None:
    assert STORE_FORMAT == RECORDED_FORMAT, (
        f"STORE_FORMAT is {STORE_FORMAT} but these outputs were recorded under {RECORDED_FORMAT}: "
        "re-record REFERENCE with the new trainer and set RECORDED_FORMAT"
    )
    digits = load_digits()
    images, labels = (digits.images / 16).astype(np.float32)[:, None], digits.target
    masks = np.zeros((2, 300), dtype=bool)
    masks[0, ::2], masks[1, :210] = True, True
    config = TrainConfig(model=model, hidden_sizes=(16,), epochs=2, batch_size=32, lr=0.05, schedule="linear",
                         precision=precision, device="cpu")
    result = train_ensemble(images[:300], labels[:300], masks, np.array([0, 5]), config, 10,
                            {"test": (images[300:306], labels[300:306])})
    true_prob, epoch_loss = REFERENCE[(model, precision)]
    message = (
        "the trainer computes other numbers than recorded: bump STORE_FORMAT in src/longtail/study.py "
        "(so that no store mixes old and new models) and re-record REFERENCE and RECORDED_FORMAT here"
    )
    atol = TOLERANCE[precision]
    np.testing.assert_allclose(result.true_prob["test"], true_prob, rtol=0, atol=atol, err_msg=message)
    np.testing.assert_allclose(result.epoch_loss, epoch_loss, rtol=0, atol=atol, err_msg=message)
