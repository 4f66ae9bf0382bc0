"""Writes tests/fixtures/text-calibration.npz: 4 sequences of 16 token ids (< 200)
with full attention masks, the calibration inputs of the -act criteria in the
tests (numpy only).

    .venv/bin/python tests/models/make_calibration.py tests/fixtures/text-calibration.npz
"""
import sys

import numpy as np

rng = np.random.default_rng(0)
np.savez(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/text-calibration.npz",
         input_ids=rng.integers(0, 200, (4, 16), dtype=np.int64), attention_mask=np.ones((4, 16), np.int64))
