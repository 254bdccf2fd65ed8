"""DataPort tables have no siteXacq: the site label is derived from (site, acquisition_setting).

OpenBHB's external site 36 also occurs in train with another acquisition setting (openbhb.md 1.4), so a
label built from ``site`` alone puts an external site in train and ``--cv fixed`` raises LeakageError.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medssl.data import open_cohort
from medssl.data.openbhb import SUFFIXES
from medssl.errors import DataError
from medssl.eval.cv import make_folds

# DataPort participants.tsv columns (openbhb.md 1.3 C), without siteXacq
COLUMNS = ["participant_id", "study", "sex", "age", "site", "diagnosis", "tiv", "csfv", "gmv", "wmv",
           "magnetic_field_strength", "acquisition_setting", "split"]
# (site, acquisition_setting, split): site 36 is in train with setting 1 and external with setting 2
ROWS = [(1, 1, "train"), (1, 1, "train"), (36, 1, "train"), (36, 1, "train"), (2, 1, "train"),
        (1, 1, "internal_test"), (36, 1, "internal_test"), (2, 1, "internal_test"),
        (36, 2, "external_test"), (36, 2, "external_test"), (5, 1, "external_test")]


def _dataport(root: Path, rows: list[tuple[object, object, str]]) -> Path:
    """A DataPort-shaped root: ``{train,val}_labels/participants.tsv`` + flat ``{train,val}_vbm/*.npy``."""
    table = pd.DataFrame(
        [(f"{100000000000 + i}", 1, "male", 20.0 + i, site, "control", 1500.0, 300.0, 700.0, 500.0, 3.0, acq,
          split) for i, (site, acq, split) in enumerate(rows)],
        columns=COLUMNS,
    )
    for folder, part in (("train", table[table.split == "train"]), ("val", table[table.split != "train"])):
        (root / f"{folder}_labels").mkdir(parents=True)
        (root / f"{folder}_vbm").mkdir()
        part.to_csv(root / f"{folder}_labels" / "participants.tsv", sep="\t", index=False)
        for pid in part.participant_id:
            np.save(root / f"{folder}_vbm" / f"sub-{pid}{SUFFIXES['vbm']}", np.zeros((1, 1, 4, 4, 4)))
    return root


def test_site_label_is_site_x_acquisition_and_fixed_fold_has_no_leak(tmp_path: Path) -> None:
    cohort = open_cohort(_dataport(tmp_path, ROWS))
    t = cohort.table
    assert cohort.layout == "dataport"
    expected = [f"{site}_{acq}" for site, acq, _ in ROWS]
    assert list(t.site) == expected  # rows keep their order: train table first, then val
    assert list(t.scanner_site.astype(int)) == [site for site, _, _ in ROWS]
    assert t.site[8] != t.site[2]  # external 36 (setting 2) is not train's 36 (setting 1)
    assert sorted(cohort.unseen_sites) == ["36_2", "5_1"]
    assert len(set(t.site_code)) == len(set(expected)) == 5
    fold = make_folds(t, "fixed")[0]  # raised LeakageError (site '36' in train and external) before
    assert list(fold.external_test) == [8, 9, 10]
    assert not set(t.site.iloc[fold.train]) & set(t.site.iloc[fold.external_test])


def test_float_formatted_codes_give_the_same_label(tmp_path: Path) -> None:
    rows = [(float(site), float(acq), split) for site, acq, split in ROWS]
    assert list(open_cohort(_dataport(tmp_path, rows)).table.site) == [f"{s}_{a}" for s, a, _ in ROWS]


def test_missing_acquisition_setting_names_the_row(tmp_path: Path) -> None:
    rows = list(ROWS)
    rows[1] = (1, None, "train")
    with pytest.raises(DataError, match=r"train_labels/participants.tsv: row 2 .*acquisition_setting"):
        open_cohort(_dataport(tmp_path, rows))


def test_only_the_modality_images_count_and_a_second_image_is_refused(tmp_path: Path) -> None:
    root = _dataport(tmp_path, ROWS)
    pid = "100000000000"
    roi = root / "train_vbm" / f"sub-{pid}_preproc-cat12vbm_desc-gm_ROI.npy"
    np.save(roi, np.ones((1, 1, 284)))  # a ROI array beside the volume: not an image of this modality
    np.save(root / "train_vbm" / f"sub-{pid}{SUFFIXES['quasiraw']}", np.ones((1, 1, 4, 4, 4)))
    cohort = open_cohort(root)
    assert cohort.table.path[0] == str(root / "train_vbm" / f"sub-{pid}{SUFFIXES['vbm']}")
    assert cohort.image_shape == (4, 4, 4)
    np.save(root / "val_vbm" / f"sub-{pid}{SUFFIXES['vbm']}", np.ones((1, 1, 4, 4, 4)))
    with pytest.raises(DataError, match=rf"val_vbm/sub-{pid}_.*: second image of participant {pid} \(also .*train_vbm"):
        open_cohort(root)


def test_float_spelled_ids_in_labels_match_their_images(tmp_path: Path) -> None:
    root = _dataport(tmp_path, ROWS)
    labels = root / "train_labels" / "participants.tsv"
    table = pd.read_csv(labels, sep="\t", dtype=str)
    table["participant_id"] = table["participant_id"] + ".0"
    table.to_csv(labels, sep="\t", index=False)
    ids = open_cohort(root).table.participant_id
    assert list(ids) == [f"{100000000000 + i}" for i in range(len(ROWS))]
