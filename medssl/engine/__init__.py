"""The training loop (``train_loop``) and what it stands on: batch feeds, sampling, checkpoints, the
gradient cache, optimisers and schedules, process-group set-up."""

from __future__ import annotations

from medssl.engine.train import NonFiniteLossError, train_loop

__all__ = ["NonFiniteLossError", "train_loop"]
