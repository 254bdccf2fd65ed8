"""Contrastive losses (one kernel-weighted InfoNCE core) and regularisers."""
