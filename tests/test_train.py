"""training.train: retraining a model's sidecar keeps the reads chosen for it."""
from __future__ import annotations

import shutil

import numpy as np

from gate.sidecar import FILE, ROOT
from training import train

QWEN = ROOT / "ckpts" / "qwen2.5-coder-1.5b-instruct"


def test_retraining_keeps_the_checkpoints_reads(tmp_path):
    """Qwen's checkpoint reads `hidden + layers` (not the default `hidden`): retrained from its shipped dataset
    into a folder holding that checkpoint's config, it keeps them and comes out as shipped."""
    shutil.copy(QWEN / "config.json", tmp_path / "config.json")
    sc = train.main(["--model", "qwen2.5-coder-1.5b-instruct", "--out", str(tmp_path)])
    assert sc.hp["reads"] == ("hidden", "layers")
    with np.load(QWEN / FILE) as shipped, np.load(tmp_path / FILE) as retrained:
        assert shipped.files == retrained.files
        for k in shipped.files:
            np.testing.assert_allclose(retrained[k], shipped[k], rtol=1e-4, atol=1e-5, err_msg=k)
    assert train.checkpoint_reads(tmp_path / "none") is None
