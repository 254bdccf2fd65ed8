# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Fine-tuning on a clinical cohort (SCZ vs controls)
#
# Seed lecture 3.4: an encoder pretrained on healthy brains (here with the y-aware loss, age as the weak
# label) initialises a diagnosis classifier; we compare it with training from scratch on the internal test
# (training sites, held-out participants) and the external test (sites never seen in training), and
# draw the label-fraction curve (AUC against the number of labelled training participants).
#
# Terminal equivalent: `medssl finetune configs/finetune/scz.yaml init=[scratch,RUN] data.source=COHORT`.
# With real data, `data.source` is a manifest CSV with a `diagnosis` column (see docs/finetune.md).

# %%
import json
import os
from pathlib import Path

import pandas as pd
import torch
from IPython.display import Image, display

from medssl.config import FinetuneConfig, PretrainConfig, load_config, resolve_file  # resolve_file: repo-relative paths
from medssl.data import make_synthetic_cohort, open_cohort, summarize_cohort
from medssl.pipelines.finetune import finetune
from medssl.pipelines.pretrain import pretrain

TINY = os.environ.get("MEDSSL_TINY") == "1"
OUT = Path(os.environ.get("MEDSSL_NB_OUT", "runs/notebooks")) / "02_finetune_clinical"
SHAPE = (16, 16, 16) if TINY else (24, 28, 24)
torch.set_num_threads(1 if TINY else 2)
os.environ.setdefault("MEDSSL_PROGRESS", "0")

# %% [markdown]
# ## 1. Pretrain y-aware on a healthy cohort

# %%
healthy = make_synthetic_cohort(OUT / "healthy", "healthy", n_subjects=48 if TINY else 160, n_sites=4 if TINY else 8,
                                n_external_sites=2, shape=SHAPE, seed=0, overwrite=True)
cfg = load_config(None, [
    "model.name=tiny_cnn3d", f"model.width={4 if TINY else 8}", "head.name=mlp", "head.hidden_dims=[64]",
    "head.out_dim=32", "views.name=cutout", "loss.name=yaware", "loss.sigma=5.0", "objective.label=age",
    "train.batch_size=16", "train.lr=1.0e-3", "train.device=cpu", f"train.epochs={1 if TINY else 8}",
    f"train.max_steps_per_epoch={2 if TINY else 'null'}", f"data.source={healthy}", "data.val_split=null",
    f"out={OUT / 'yaware'}"], PretrainConfig)
encoder = pretrain(cfg, overwrite=True)

# %% [markdown]
# ## 2. A synthetic SCZ cohort (cases and controls at every site, two external sites)

# %%
scz = make_synthetic_cohort(OUT / "scz", "scz", n_subjects=48 if TINY else 120, n_sites=4, n_external_sites=2,
                            shape=SHAPE, seed=1, layout="nifti", overwrite=True)
display(summarize_cohort(open_cohort(scz)))

# %% [markdown]
# ## 3. Fine-tune from scratch and from the encoder, at two label budgets

# %%
ft = load_config(resolve_file("configs/finetune/scz.yaml"), [
    f"data.source={scz}", f"init=[scratch,{encoder}]", "model.name=tiny_cnn3d", f"model.width={4 if TINY else 8}",
    "finetune.repeats=2", "finetune.lr_decay=1.0", "train.precision=fp32", "train.device=cpu",
    f"train.epochs={1 if TINY else 6}", f"train.batch_size={4 if TINY else 16}", "train.lr=1.0e-3",
    f"train.n_labelled={[8, 16] if TINY else [16, 48]}", f"out={OUT / 'finetune'}"], FinetuneConfig)
run = finetune(ft, overwrite=True)
metrics = json.loads((run / "metrics.json").read_text())
pd.DataFrame([{"init": r["init"], "n_labelled": r["n_labelled"],
               **{k: f"{r[k]['mean']:.3f} ± {r[k]['std']:.3f}" for k in ("auc_internal", "auc_external")}}
              for r in metrics["results"]])

# %%
display(Image(str(run / "roc.png")))
display(Image(str(run / "label_fraction.png")))

# %% [markdown]
# The leakage guard checked that no participant or study of the pretraining cohort is in the clinical one
# (`metrics.json → leakage`). On real data this matters: ABIDE is part of OpenBHB, so an OpenBHB encoder must
# not be fine-tuned on an ABIDE-based ASD cohort without removing it from pretraining.
# `experiments/transfer_cpu.yaml` repeats this for SCZ, BD and ASD and five initialisations over seeds.
