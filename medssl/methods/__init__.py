"""Training methods: how a batch becomes a loss (siamese contrastive, BYOL, DINO, ...)."""
