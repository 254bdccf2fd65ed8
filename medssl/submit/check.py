"""Local stand-in for the RAMP server: run a submission on a kit-layout cohort, check the kit's contract and
return its four scores.

Emulates the kit's ``train_submission`` / ``test_submission`` (``problem.py``): import estimator.py under
the sanitizer, set ``VBM_MASK`` / ``QUASIRAW_MASK`` to the masks at the kit root, ``fit(None, None)``,
set ``indices`` on every step that has it, ``predict`` on the FULL matrix, reset ``indices``; then the
server's probes (``openbhb_age`` / ``openbhb_site``) and scores: ``mae_age`` and ``bacc_site`` on the
internal test rows, ``ext_mae_age`` on the external ones, ``challenge_metric = ext_mae_age * bacc_site**0.3``.
Whatever the submission does wrong (a sanitizer word, an exception in its own code, a broken contract) is a
``SubmissionFailure`` naming the step and, for an exception, the line of estimator.py.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from medssl.errors import DataError
from medssl.eval.metrics import balanced_accuracy, challenge_score, mae
from medssl.registry import PROBES
from medssl.submit.export import MAX_FEATURES, load_estimator_module
from medssl.submit.sanitize import check_source

MASK_FILES = {
    "VBM_MASK": "cat12vbm_space-MNI152_desc-gm_TPM.nii.gz",
    "QUASIRAW_MASK": "quasiraw_space-MNI152_desc-brain_T1w.nii.gz",
}
"""Env var -> file name at the kit root (the kit's ``train_submission`` sets these)."""


@dataclass
class KitData:
    """A kit-layout cohort: memmapped ``X_*`` (n, width) and label tables (``age``, ``site``, ``split``)."""

    X_train: np.ndarray
    y_train: pd.DataFrame
    X_test: np.ndarray
    y_test: pd.DataFrame
    masks: dict[str, Path]


def read_kit(root: str | Path) -> KitData:
    """Read ``root/data/{train,test}.{npy,tsv}`` (npy memmapped) and locate the two masks at ``root``."""
    root = Path(root)
    needed = [root / "data" / f"{s}.{e}" for s in ("train", "test") for e in ("npy", "tsv")]
    needed += [root / name for name in MASK_FILES.values()]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise DataError(
            f"not a kit layout: missing {missing}. Masks go at the kit root; write a synthetic kit with "
            "`medssl synth --layout kit` or download the data with the kit's download_data.py"
        )
    parts = {}
    for split in ("train", "test"):
        X = np.load(root / "data" / f"{split}.npy", mmap_mode="r")
        y = pd.read_csv(root / "data" / f"{split}.tsv", sep="\t")
        absent = {"age", "site", "split"} - set(y.columns)
        if absent or len(y) != len(X):
            raise DataError(
                f"{root / 'data' / f'{split}.tsv'}: needs columns age, site, split (missing {sorted(absent)}) "
                f"and one row per row of {split}.npy ({len(y)} vs {len(X)})"
            )
        parts[split] = (X, y)
    masks = {env: root / name for env, name in MASK_FILES.items()}
    return KitData(*parts["train"], *parts["test"], masks=masks)


class SubmissionFailure(DataError):
    """The submission breaks the kit's contract or raises in its own code: the check's FAIL."""


@contextlib.contextmanager
def submission_step(step: str, folder: str | Path) -> Iterator[None]:
    """Turn an exception raised by the submission's own code during ``step`` into a ``SubmissionFailure``
    naming the step, the exception and the last estimator.py line it passed through."""
    try:
        yield
    except SubmissionFailure:
        raise
    except Exception as exc:  # anything the submission's code raises is its failure, reported in one line
        path = Path(folder) / "estimator.py"
        lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
        where = f" ({path}, line {lines[-1]})" if lines else ""
        message = (str(exc).strip().splitlines() or [""])[0][:300]
        raise SubmissionFailure(f"{step} raised {type(exc).__name__}: {message}{where}") from exc


def import_submission(folder: str | Path, strict: bool = False) -> Any:
    """Import ``folder/estimator.py`` as the kit does (sanitize first); ``SubmissionFailure`` names offending
    lines."""
    path = Path(folder) / "estimator.py"
    if not path.is_file():
        raise SubmissionFailure(f"{path} does not exist: give a submission folder (medssl export-openbhb --out ...)")
    try:
        check_source(path.read_text(), str(path), strict=strict)
    except DataError as exc:
        raise SubmissionFailure(str(exc)) from exc
    with submission_step("importing estimator.py", folder):
        module = load_estimator_module(folder)
    if not callable(getattr(module, "get_estimator", None)):
        raise SubmissionFailure(f"{path} defines no get_estimator()")
    return module


@contextlib.contextmanager
def mask_env(masks: dict[str, Path]) -> Iterator[None]:
    """Set ``VBM_MASK`` / ``QUASIRAW_MASK`` for the duration, then restore the previous values."""
    old = {k: os.environ.get(k) for k in masks}
    os.environ.update({k: str(v) for k, v in masks.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def set_indices(estimator: Any, indices: Any) -> int:
    """``item.indices = indices`` on every step of ``estimator`` that has it (the kit's loop); returns how many."""
    try:
        items = list(estimator)
    except TypeError as exc:
        raise SubmissionFailure("get_estimator() must return an iterable estimator (a sklearn Pipeline)") from exc
    n = 0
    for item in items:
        if hasattr(item, "indices"):
            item.indices = indices
            n += 1
    return n


def server_features(fitted: Any, X: np.ndarray, rows: Any) -> np.ndarray:
    """Features of ``X[rows]`` the way the server asks: indices on the steps, ``predict`` on the FULL ``X``.

    Raises:
        SubmissionFailure: no step has ``indices``; output not a finite 2-D array with one row per index and
            at most 10000 columns.
    """
    if set_indices(fitted, rows) == 0:
        raise SubmissionFailure("no step of the fitted estimator has an `indices` attribute: the kit's CV would fail")
    try:
        features = fitted.predict(X)
    finally:
        set_indices(fitted, None)
    if not isinstance(features, np.ndarray) or features.ndim != 2:
        raise SubmissionFailure(f"predict must return a 2-D numpy array, got {type(features).__name__}")
    if len(features) != len(rows):
        raise SubmissionFailure(f"predict returned {len(features)} rows for {len(rows)} indices: `indices` ignored")
    if features.shape[1] > MAX_FEATURES:
        raise SubmissionFailure(f"{features.shape[1]} features: the kit raises above {MAX_FEATURES}")
    if not np.isfinite(features).all():
        raise SubmissionFailure("predict returned NaN or inf features")
    return features


def probe_scores(F_train: np.ndarray, y_train: pd.DataFrame, F_test: np.ndarray, y_test: pd.DataFrame,
                 n_jobs: int | None = None) -> dict[str, float]:
    """Fit the server's probes on the train features and score the test rows (kit ``problem.py``).

    Returns:
        ``mae_age``, ``bacc_site`` (internal rows), ``ext_mae_age`` (external rows, 0 if none),
        ``challenge_metric`` (0 if no external rows, as the kit) and ``converged`` (1.0 if saga converged).
    """
    age = PROBES.build("openbhb_age", n_jobs=n_jobs)
    site = PROBES.build("openbhb_site", n_jobs=n_jobs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        age.fit(F_train, y_train["age"].to_numpy(float))
        site.fit(F_train, y_train["site"].to_numpy(int))
    internal = (y_test["split"] == "internal_test").to_numpy()
    external = (y_test["split"] == "external_test").to_numpy()
    if not internal.any():
        raise DataError("test.tsv has no internal_test rows: the site and age scores need them")
    age_pred = age.predict(F_test)
    site_pred = site.predict(F_test[internal])
    scores = {
        "mae_age": mae(y_test["age"].to_numpy(float)[internal], age_pred[internal]),
        "bacc_site": balanced_accuracy(y_test["site"].to_numpy()[internal].astype(int), site_pred),
        "ext_mae_age": mae(y_test["age"].to_numpy(float)[external], age_pred[external]) if external.any() else 0.0,
    }
    scores["challenge_metric"] = challenge_score(scores["ext_mae_age"], scores["bacc_site"])
    scores["converged"] = float(not any(issubclass(w.category, ConvergenceWarning) for w in caught))
    return scores


def check_submission(folder: str | Path, kit_root: str | Path, strict: bool = False, n_jobs: int | None = None,
                     log: Callable[[str], None] = print) -> dict[str, float]:
    """Run the server's calls on a kit-layout cohort, check the ``indices`` contract, return the scores.

    Raises:
        DataError: ``kit_root`` is not a kit layout.
        SubmissionFailure: the submission fails (see the module docstring).
    """
    kit = read_kit(kit_root)
    module = import_submission(folder, strict=strict)
    log(f"sanitizer: ok ({Path(folder) / 'estimator.py'})")
    with mask_env(kit.masks):
        with submission_step("get_estimator().fit(None, None)", folder):
            fitted = module.get_estimator().fit(None, None)
        start = time.perf_counter()
        with submission_step("predict on the train rows", folder):
            F_train = server_features(fitted, kit.X_train, np.arange(len(kit.X_train)))
        seconds = (time.perf_counter() - start) / max(len(kit.X_train), 1)
        with submission_step("predict on the test rows", folder):
            F_test = server_features(fitted, kit.X_test, range(len(kit.X_test)))
            subset = np.arange(len(kit.X_train))[::-1][: min(4, len(kit.X_train))]
            F_subset = server_features(fitted, kit.X_train, subset)
    if not np.allclose(F_subset, F_train[subset], atol=1e-5, rtol=1e-5):
        raise SubmissionFailure("predict with indices=[...] differs from the same rows of a full predict")
    log(f"features: train {F_train.shape}, test {F_test.shape} from rows of {kit.X_train.shape[1]} columns, "
        f"{seconds * 1e3:.1f} ms per subject")
    scores = probe_scores(F_train, kit.y_train, F_test, kit.y_test, n_jobs=n_jobs)
    if not scores["converged"]:
        log("warning: the site probe (saga, max_iter=150) did not converge; features may be badly scaled")
    return scores
