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
# # 03 · The OpenBHB challenge: real-data set-up and an offline dry run
#
# The OpenBHB "brain age with site removal" challenge scores a **frozen feature extractor**: the RAMP server
# fits a ridge regression (age) and a logistic regression (site) on your features and reports
# `challenge_metric = ext_mae_age × bacc_site^0.3` (lower is better).
#
# ## With the real data (not run here: ~55 GB, needs the network once)
#
# ```bash
# # 1. data: the HuggingFace release (benoit-dufumier/openBHB) or the challenge kit
# git clone https://github.com/ramp-kits/brain_age_with_site_removal && cd brain_age_with_site_removal
# python download_data.py                      # kit layout: data/{train,test}.{npy,tsv} + masks
# # 2. pretrain with the published recipe (GPU), pointing data.source at the OpenBHB root or kit
# medssl pretrain configs/pretrain/exp_resnet18.yaml data.source=/data/openbhb out=runs/exp_r18
# # 3. the local scores of the frozen encoder (same probes as the server)
# medssl evaluate runs/exp_r18 --data /data/openbhb
# # 4. export a RAMP submission and check it as the server would
# medssl export-openbhb runs/exp_r18 --out submissions/exp_r18
# medssl check-submission submissions/exp_r18 --data ~/brain_age_with_site_removal
# ```
#
# `docs/challenge.md` has the details (estimator contract, sanitizer rules, `ramp-test`).
#
# ## Offline dry run
# The same steps on a synthetic cohort written **in the kit layout** — nothing is downloaded.

# %%
import os
from pathlib import Path

import pandas as pd
import torch

from medssl.config import PretrainConfig, load_config
from medssl.data import make_synthetic_cohort, open_cohort
from medssl.pipelines.evaluate import evaluate
from medssl.pipelines.pretrain import pretrain
from medssl.submit import check_submission, export_openbhb

TINY = os.environ.get("MEDSSL_TINY") == "1"
OUT = Path(os.environ.get("MEDSSL_NB_OUT", "runs/notebooks")) / "03_openbhb_challenge"
torch.set_num_threads(1 if TINY else 2)
os.environ.setdefault("MEDSSL_PROGRESS", "0")

kit = make_synthetic_cohort(OUT / "kit", n_subjects=48 if TINY else 160, n_sites=4 if TINY else 8,
                            n_external_sites=2, shape=(16, 16, 16) if TINY else (24, 28, 24), seed=0,
                            layout="kit", overwrite=True)
print(open_cohort(kit))
sorted(str(p.relative_to(kit)) for p in kit.rglob("*") if p.is_file())

# %% [markdown]
# ### Pretrain with L_exp (the challenge's best published loss), tiny CNN

# %%
cfg = load_config(None, [
    f"data.source={kit}", "data.val_split=null", "model.name=tiny_cnn3d", f"model.width={4 if TINY else 8}",
    "head.name=mlp", "head.hidden_dims=[64]", "head.out_dim=32", "head.l2_norm=true",
    "loss.name=exp", "loss.sigma=2.0", "loss.variant=code", "loss.base_temperature=0.07", "objective.label=age",
    "views.name=cutout", "train.batch_size=16", "train.lr=1.0e-3", "train.device=cpu",
    f"train.epochs={1 if TINY else 8}", f"train.max_steps_per_epoch={2 if TINY else 'null'}",
    f"out={OUT / 'exp_tiny'}"], PretrainConfig)
run = pretrain(cfg, overwrite=True)

# %% [markdown]
# ### Export the RAMP submission and run it as the server does

# %%
# the tiny encoder never saw the challenge's 121x145x121 grid, only this kit's: allowed for the dry run
submission = export_openbhb(run, OUT / "submission", overwrite=True, allow_grid_mismatch=True)
print(sorted(p.name for p in submission.iterdir()))
server = check_submission(submission, kit)
server

# %% [markdown]
# ### The same encoder through `medssl evaluate`
# The exported estimator is plain torch (no medssl import); on the same subjects it reproduces medssl's
# features, so the local scores agree with the server-style check.

# %%
local = evaluate(run, kit, out=OUT / "eval", overwrite=True, progress=False, device="cpu")
table = pd.DataFrame({
    "check_submission (server calls)": [server["mae_age"], server["ext_mae_age"], server["bacc_site"],
                                        server["challenge_metric"]],
    "medssl evaluate": [local["mae_internal"], local["mae_external"], local["bacc_site"], local["challenge_score"]],
}, index=["MAE internal", "MAE external", "site BAcc", "challenge score"])
assert abs(table.iloc[3, 0] - table.iloc[3, 1]) < 1e-3 * max(1.0, table.iloc[3, 1])
table
