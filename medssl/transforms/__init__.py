"""3D view pipelines: MONAI dict transforms per sample, and batched torch augmentations on device."""
