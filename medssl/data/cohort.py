"""``Cohort``: one table row per scan, a lazy image reader, and the site encoding shared by all splits.

Site codes (ARCHITECTURE.md): sites seen in the ``train`` split get codes ``0..K-1`` in natural sort
order (numeric names by value), the other sites ``K..`` after them, so a code ``>= K`` means "unseen in
training". ``select`` keeps the encoding, so every split of one cohort agrees on it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np
import pandas as pd

from medssl.data.images import file_key, read_image
from medssl.errors import DataError

SPLITS = ("train", "internal_test", "external_test")
MODALITIES = ("vbm", "quasiraw")
TEXT_COLUMNS = ("participant_id", "split", "site", "sex", "diagnosis", "study")
MISSING = ("", "n/a", "na", "nan", "none")
INTEGRAL_TEXT = re.compile(r"^[+-]?\d+\.0+$")  # "123.0": an integer that went through a float column
NUMERIC_NAME = re.compile(r"^[+-]?\d+(\.\d+)?$")  # site names sorted by value ("36_2" is not one)
SEX_VALUES = {
    "male": "male", "m": "male", "man": "male",
    "female": "female", "f": "female", "woman": "female",
    "": "", "nan": "", "n/a": "", "na": "", "unknown": "", "none": "",
}  # fmt: skip


class ImageSource(Protocol):
    """How a cohort turns one table row into a float32 ``(1, D, H, W)`` array."""

    def read(self, row: pd.Series) -> np.ndarray: ...

    def key(self, row: pd.Series) -> str: ...


class PathSource:
    """Rows carry an absolute ``path`` to one ``.npy`` or NIfTI file."""

    def read(self, row: pd.Series) -> np.ndarray:
        return read_image(row["path"])

    def key(self, row: pd.Series) -> str:
        return file_key(row["path"])


def _site_sort_key(name: str) -> tuple[int, float, str]:
    """Numeric names (``NUMERIC_NAME``; not ``float()``, which accepts ``"36_2"``, ``"nan"``) by value."""
    if NUMERIC_NAME.match(name):
        return (0, float(name), name)
    return (1, 0.0, name)


def encode_sites(table: pd.DataFrame) -> list[str]:
    """Site names indexed by site code: train sites first (sorted), then the unseen ones (sorted)."""
    train = set(table.loc[table["split"] == "train", "site"])
    others = set(table["site"]) - train
    return sorted(train, key=_site_sort_key) + sorted(others, key=_site_sort_key)


def text_column(series: pd.Series) -> pd.Series:
    """Stripped strings: NaN and the ``MISSING`` tokens (any case) become ``""``; integral floats,
    ``12.0`` or the text ``"12.0"``, become ``"12"``, so IDs and site codes that went through a float
    column match their integer spelling (openbhb.md 1.4: never match IDs as floats)."""

    def one(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return ""
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        text = str(v).strip()
        if text.lower() in MISSING:
            return ""
        return text.split(".")[0] if INTEGRAL_TEXT.match(text) else text

    return series.map(one).astype(object)


def standardize_table(table: pd.DataFrame, where: str) -> pd.DataFrame:
    """Check and normalise the contract columns of a scan table; ``where`` names the file in errors.

    ``participant_id`` is required; ``split`` defaults to ``train`` (absent column, or every cell
    empty); ``site``, ``sex``, ``diagnosis`` and ``study`` default to ``""``; ``age`` to NaN. Text
    columns go through ``text_column``. Sex strings are mapped to ``male``/``female``/``""``. A split or
    a site filled for some rows but empty for others is a DataError (a blank would silently become
    ``train``, or an unknown site its own site class).
    """
    if "participant_id" not in table.columns:
        raise DataError(f"{where}: missing required column 'participant_id' (one id per scan)")
    table = table.reset_index(drop=True).copy()
    for col in TEXT_COLUMNS:
        table[col] = text_column(table[col]) if col in table.columns else ""
    if "session" in table.columns:
        table["session"] = text_column(table["session"])
    refuse_partly_empty(table, "split", where, "write train, internal_test or external_test in every row")
    refuse_partly_empty(table, "site", where, "fill in every site, or leave the whole column empty")
    table.loc[table["split"] == "", "split"] = "train"
    empty = table.index[table["participant_id"] == ""]
    if len(empty):
        raise DataError(f"{where}: row {int(empty[0]) + 1} has an empty participant_id; fill it in")
    bad = table.index[~table["split"].isin(SPLITS)]
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{where}: row {i + 1} ({table.at[i, 'participant_id']}) has unknown split "
            f"{table.at[i, 'split']!r}; use one of {', '.join(SPLITS)}"
        )
    sex = table["sex"].str.lower().map(SEX_VALUES)
    if sex.isna().any():
        i = int(sex.index[sex.isna()][0])
        raise DataError(
            f"{where}: row {i + 1} ({table.at[i, 'participant_id']}) has sex {table.at[i, 'sex']!r}; "
            "use male/female (or M/F), empty when unknown"
        )
    table["sex"] = sex.astype(object)
    table["age"] = numeric_column(table, "age", where) if "age" in table.columns else np.nan
    return table


def refuse_partly_empty(table: pd.DataFrame, col: str, where: str, fix: str) -> None:
    """Raise DataError naming the first rows when ``col`` is empty in some rows but not in all."""
    empty = table.index[table[col] == ""]
    if 0 < len(empty) < len(table):
        rows = ", ".join(f"{int(i) + 1} ({table.at[i, 'participant_id']})" for i in empty[:5])
        raise DataError(
            f"{where}: {col} is empty in {len(empty)} of {len(table)} rows (rows {rows}); {fix}"
        )


def numeric_column(table: pd.DataFrame, col: str, where: str) -> pd.Series:
    """A float column; empty, ``n/a`` and ``nan`` mean missing, any other non-number is a DataError."""
    raw = text_column(table[col])
    values = pd.to_numeric(raw.where(~raw.str.lower().isin(MISSING), None), errors="coerce")
    bad = table.index[values.isna() & ~raw.str.lower().isin(MISSING)]
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{where}: row {i + 1} ({table.at[i, 'participant_id']}) has non-numeric {col} "
            f"{table.at[i, col]!r}; write a number, empty when unknown"
        )
    return values.astype(np.float64)


def check_unique(table: pd.DataFrame, where: str, on: tuple[str, ...] = ("participant_id",)) -> None:
    """Raise DataError naming the first duplicated id (one scan per participant, or per ``on``)."""
    dup = table.duplicated(list(on), keep=False)
    if dup.any():
        first = table.loc[dup, list(on)].iloc[0].tolist()
        rows = [int(i) + 1 for i in table.index[dup][:4]]
        raise DataError(
            f"{where}: duplicate {'/'.join(on)} {first} (rows {rows}); keep one scan per "
            f"{'/'.join(on)} or add a distinguishing session column"
        )


class Cohort:
    """A table of scans (one row each) plus lazy access to their images.

    Attributes:
        table: DataFrame with at least participant_id, split, site, site_code, age, sex, diagnosis, study.
        image_shape: ``(D, H, W)`` as stored.
        site_names: site name of each code (``site_names[code]``).
        n_train_sites: K, the number of sites seen in the ``train`` split; codes ``>= K`` are unseen.
        source, modality, layout: where the cohort came from (``layout`` in hf/dataport/kit/manifest).
        table_files: the file holding the labels of each split's rows (``table_file(split)``).
    """

    def __init__(
        self,
        table: pd.DataFrame,
        reader: ImageSource,
        image_shape: tuple[int, int, int],
        source: str | Path = "",
        modality: str = "vbm",
        layout: str = "manifest",
        site_names: list[str] | None = None,
        n_train_sites: int | None = None,
        table_files: dict[str, str] | None = None,
    ) -> None:
        table = table.reset_index(drop=True)
        if site_names is None:
            site_names = encode_sites(table)
            n_train_sites = len(set(table.loc[table["split"] == "train", "site"]))
        lookup = {name: code for code, name in enumerate(site_names)}
        table["site_code"] = table["site"].map(lookup).astype(np.int64)
        self.table = table
        self.reader = reader
        self.image_shape = tuple(int(s) for s in image_shape)
        self.site_names = list(site_names)
        self.n_train_sites = int(n_train_sites or 0)
        self.source = str(source)
        self.modality = modality
        self.layout = layout
        self.table_files = dict(table_files or {})

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        splits = self.table["split"].value_counts().to_dict()
        return (
            f"Cohort({self.layout}:{self.source}, modality={self.modality}, n={len(self)}, "
            f"shape={self.image_shape}, sites={len(self.site_names)}, splits={splits})"
        )

    def table_file(self, split: str) -> str:
        """The file that holds the labels of ``split``'s rows (the cohort's source when not recorded)."""
        return self.table_files.get(split, self.source)

    @property
    def unseen_sites(self) -> list[str]:
        """Sites that never appear in the ``train`` split (codes ``>= n_train_sites``)."""
        return self.site_names[self.n_train_sites :]

    def read(self, i: int) -> np.ndarray:
        """Image of table row ``i`` as float32 ``(1, D, H, W)`` (lazy: memmap or nibabel)."""
        if not 0 <= i < len(self.table):
            raise IndexError(f"row {i} out of range for a cohort of {len(self.table)} scans")
        return self.reader.read(self.table.iloc[i])

    def cache_key(self, i: int) -> str:
        """A string that changes when the stored image of row ``i`` changes."""
        return self.reader.key(self.table.iloc[i])

    def select(self, splits: str | Iterable[str]) -> "Cohort":
        """A view on some splits, keeping this cohort's site encoding."""
        wanted = [splits] if isinstance(splits, str) else list(splits)
        unknown = [s for s in wanted if s not in SPLITS]
        if unknown:
            raise DataError(f"unknown split {unknown[0]!r}; use one of {', '.join(SPLITS)}")
        view = self.table[self.table["split"].isin(wanted)]
        return Cohort(
            view, self.reader, self.image_shape, self.source, self.modality, self.layout,
            self.site_names, self.n_train_sites, self.table_files,
        )  # fmt: skip
