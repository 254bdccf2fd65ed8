"""Micro studies (tiny CNN, 16^3 volumes, 48 subjects, 1 epoch of 2 steps), run once per module."""

from __future__ import annotations

import os

import pytest
import torch

os.environ["MEDSSL_PROGRESS"] = "0"

MICRO = ["cohort.n_subjects=48", "cohort.n_sites=4", "cohort.shape=[16,16,16]", "pretrain.train.epochs=1",
         "pretrain.train.max_steps_per_epoch=2", "pretrain.train.warmup_epochs=0", "pretrain.train.device=cpu",
         "pretrain.model.width=4", "evaluate.device=cpu", "baselines=false"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def micro(*extra: str) -> list[str]:
    """The micro overrides plus ``extra``."""
    return [*MICRO, *extra]
