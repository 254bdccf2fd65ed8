"""Cohort summaries: a table per split, a full validation pass, and an overview figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medssl.data.cohort import MODALITIES, SPLITS, Cohort
from medssl.data.images import sha256_file
from medssl.data.leakage import check_split_leakage
from medssl.data.sources import open_cohort
from medssl.errors import DataError, LeakageError
from medssl.utils.io import atomic_path


def _summary_row(table: pd.DataFrame, train_sites: set[str]) -> dict[str, object]:
    age = table["age"]
    diagnoses = table["diagnosis"].replace("", "(missing)").value_counts()
    return {
        "scans": len(table),
        "subjects": table["participant_id"].nunique(),
        "sites": table["site"].nunique(),
        "unseen_sites": len(set(table["site"]) - train_sites),
        "age_min": round(float(age.min()), 2) if age.notna().any() else np.nan,
        "age_mean": round(float(age.mean()), 2) if age.notna().any() else np.nan,
        "age_max": round(float(age.max()), 2) if age.notna().any() else np.nan,
        "female": int((table["sex"] == "female").sum()),
        "male": int((table["sex"] == "male").sum()),
        "missing_age": int(age.isna().sum()),
        "missing_sex": int((table["sex"] == "").sum()),
        "missing_site": int((table["site"] == "").sum()),
        "diagnosis": ", ".join(f"{k}: {v}" for k, v in diagnoses.items()),
    }


def summarize_cohort(cohort: Cohort) -> pd.DataFrame:
    """One row per split present (in train/internal_test/external_test order) plus ``all``.

    Columns: scans, subjects, sites, unseen_sites (not in train), age_min/mean/max, female, male,
    missing_age, missing_sex, missing_site, diagnosis (counts).
    """
    table = cohort.table
    train_sites = set(table.loc[table["split"] == "train", "site"])
    rows = {s: _summary_row(table[table["split"] == s], train_sites) for s in SPLITS if (table["split"] == s).any()}
    rows["all"] = _summary_row(table, train_sites)
    return pd.DataFrame.from_dict(rows, orient="index")


def _lacks(table: pd.DataFrame, column: str) -> pd.Series:
    """True where ``column`` has no value: NaN (numeric ``age``) or ``""`` (text columns such as ``site``)."""
    values = table[column]
    return values.isna() if values.dtype.kind in "fiu" else values.astype(str).str.strip().eq("")


def missing_labels(cohort: Cohort, columns: tuple[str, ...] = ("age", "site"),
                   splits: tuple[str, ...] = ("train",)) -> list[str]:
    """One line per (split, column) whose rows lack a value: the table file, the column, how many and which.

    ``age`` is missing when NaN (absent column, empty cell, ``n/a``); ``site`` when empty.
    """
    table = cohort.table
    problems = []
    for split in splits:
        rows = table[table["split"] == split]
        for column in columns:
            lacking = rows[_lacks(rows, column)]
            if len(lacking):
                scans = "training scans" if split == "train" else f"{split} scans"
                which = "the column is absent or empty" if len(lacking) == len(rows) else "e.g. " + ", ".join(
                    f"row {int(i) + 1} ({pid})" for i, pid in lacking["participant_id"].head(3).items())
                problems.append(f"{cohort.table_file(split)}: {len(lacking)} of {len(rows)} {scans} have no "
                                f"{column!r} ({which})")
    return problems


def require_labels(cohort: Cohort, columns: tuple[str, ...], splits: tuple[str, ...], fix: str) -> None:
    """``DataError`` (one line: files, columns, counts, then ``fix``) when ``missing_labels`` finds any."""
    problems = missing_labels(cohort, columns, splits)
    if problems:
        raise DataError(f"{'; '.join(problems)}; {fix}")


def validate_cohort(cohort: Cohort, check_sha256: bool = True) -> pd.DataFrame:
    """Read every image (finite voxels, shape), check checksums and split leakage; return the summary.

    Raises:
        DataError: listing the first problems (file/row and fix) and how many there are.
    """
    problems = []
    has_sha = check_sha256 and "sha256" in cohort.table.columns
    for i in range(len(cohort)):
        try:
            volume = cohort.read(i)
        except DataError as exc:
            problems.append(str(exc))
            continue
        if volume.shape[1:] != cohort.image_shape:
            problems.append(f"row {i + 1}: shape {volume.shape[1:]} differs from {cohort.image_shape}")
        expected = str(cohort.table.at[i, "sha256"]).strip() if has_sha else ""
        if expected and sha256_file(cohort.table.at[i, "path"]) != expected.lower():
            problems.append(f"{cohort.table.at[i, 'path']}: sha256 differs from the manifest; the file changed")
    try:
        check_split_leakage(cohort, mode="error")
    except LeakageError as exc:
        problems.append(str(exc))
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise DataError(f"{cohort.source}: {len(problems)} problem(s): {shown}{more}")
    return summarize_cohort(cohort)


def _sibling_modalities(cohort: Cohort) -> dict[str, Cohort]:
    """This cohort plus the other modalities its source also holds (HF, DataPort, kit, synthetic)."""
    found = {cohort.modality: cohort}
    source = Path(cohort.source)
    root = source.parent if cohort.layout == "manifest" and source.name.startswith("manifest_") else source
    if cohort.layout == "manifest" and root == source:
        return found
    for modality in MODALITIES:
        if modality not in found:
            try:
                found[modality] = open_cohort(root, modality)
            except DataError:
                pass  # the source does not hold this modality: no panel for it
    return found


def plot_cohort(cohort: Cohort, path: str | Path) -> Path:
    """PNG overview: age histogram per split, scans per site per split, a mid axial slice per modality."""
    # deferred: matplotlib only for this figure; no other part of medssl.data needs it
    from matplotlib.figure import Figure  # no pyplot: works under any backend, nothing left open

    modalities = _sibling_modalities(cohort)
    table = cohort.table
    fig = Figure(figsize=(4.2 * (2 + len(modalities)), 3.8))
    axes = fig.subplots(1, 2 + len(modalities))
    present = [s for s in SPLITS if (table["split"] == s).any()]
    ages = [table.loc[table["split"] == s, "age"].dropna() for s in present]
    axes[0].hist(ages, bins=20, stacked=True, label=present)
    axes[0].set(title="age by split", xlabel="age (years)", ylabel="scans")
    axes[0].legend(fontsize=8)
    counts = pd.crosstab(table["site_code"], table["split"]).reindex(columns=present, fill_value=0)
    bottom = np.zeros(len(counts))
    for split in present:
        axes[1].bar(counts.index, counts[split], bottom=bottom, label=split)
        bottom += counts[split].to_numpy()
    axes[1].set(title="scans per site (site code)", xlabel="site code", ylabel="scans")
    for ax, (modality, other) in zip(axes[2:], modalities.items()):
        volume = other.read(0)[0]
        ax.imshow(volume[:, :, volume.shape[2] // 2].T, origin="lower", cmap="gray")
        ax.set(title=f"{modality}: {other.table.at[0, 'participant_id']}")
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path
