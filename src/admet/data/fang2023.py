"""The fang2023 benchmark: Biogen's public ADME set with the paper's splits, plus AstraZeneca
ChEMBL data as a second quality tier.

:func:`prepare` turns the raw files (see ``../shared/data/fang2023/README.md``) into the
project's processed layout:

``train.csv``
    the union of the six train splits as one multi-task table, one row per (molecule,
    quality tier); columns ``SMILES, HLM, RLM, MDR1_ER, Sol, hPPB, rPPB, Quality, Source``.
``test_<E>.csv``
    endpoint E's test split (``SMILES, <E>, Quality``); never read by the HPO.
``strict_exclusions.csv``
    ``Endpoint, SMILES``: the training molecules that are in endpoint E's test split; the
    "per-endpoint strict" protocol drops them from training before scoring E.
``summary.json``
    label counts per task, quality tier and split, and the raw row counts of each split.

Quality tiers: ``high`` = measured by Biogen (the molecule is in the 3521 set with a value
for that endpoint, matched by InChIKey because the files were canonicalised by different
RDKit versions, and by value, because the PPB splits mix both laboratories; this finds
189 of Biogen's 194 hPPB rows and 163 of its 168 rPPB rows, the rest count as medium);
``medium`` = the AstraZeneca PPB rows of the hPPB/rPPB splits; ``low`` =
optional AstraZeneca microsomal clearance and solubility after unit conversion:

* HLM: AZ reports CLint per gram of microsomal protein (mL/min/g = uL/min/mg). Scaled to
  Biogen's per-kg-body-weight unit with the standard human factors 45 mg microsomal protein
  per g liver and 20 g liver per kg body weight:
  CL[mL/min/kg] = CL[uL/min/mg] * 45 * 20 / 1000, i.e. log10 + log10(0.9).
* Sol: AZ reports logS = log10(mol/L) at pH 7.4; Biogen log10(ug/mL) at pH 6.8. The unit
  part converts exactly with the molecular weight: log10(ug/mL) = logS + log10(MW) + 3.
  The pH difference is not corrected, which is why these rows are only ``low`` quality.

Output is deterministic: the same raw files give byte-identical processed files.

Over 350 lines because preparing the benchmark is one deterministic pipeline (checksums,
raw files, Biogen matching, AstraZeneca unit conversions, the tables and their summary),
documented above as a whole.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem, RDLogger
from rdkit.Chem import Descriptors
from tqdm.auto import tqdm

from admet.data.dataset import canonical_smiles
from admet.data.fetch import fetch_files, sha256_file
from admet.errors import DataError
from admet.paths import home, raw_dataset_dir

__all__ = [
    "BIOGEN_COLUMNS",
    "ENDPOINTS",
    "QUALITIES",
    "RAW_FILES",
    "default_processed_dir",
    "ensure_prepared",
    "fetch",
    "prepare",
    "read_checksums",
    "verify_checksums",
]

logger = logging.getLogger(__name__)

NAME = "fang2023"
ENDPOINTS: tuple[str, ...] = ("HLM", "RLM", "MDR1_ER", "Sol", "hPPB", "rPPB")
QUALITIES: tuple[str, ...] = ("high", "medium", "low")
BIOGEN_FILE = "ADME_public_set_3521.csv"
BIOGEN_COLUMNS: dict[str, str] = {
    "HLM": "LOG HLM_CLint (mL/min/kg)",
    "RLM": "LOG RLM_CLint (mL/min/kg)",
    "MDR1_ER": "LOG MDR1-MDCK ER (B-A/A-B)",
    "Sol": "LOG SOLUBILITY PH 6.8 (ug/mL)",
    "hPPB": "LOG PLASMA PROTEIN BINDING (HUMAN) (% unbound)",
    "rPPB": "LOG PLASMA PROTEIN BINDING (RAT) (% unbound)",
}
LOW_TIER_FILES: dict[str, tuple[str, str]] = {
    # endpoint: (file, value column)
    "HLM": ("external/microsomal_AZ-hLM.csv", "LOG HLM_CLint (mL/min/g)"),
    "Sol": ("external/solubility_AZ-sol.csv", "logS"),
}
HLM_LOG_FACTOR = math.log10(45 * 20 / 1000)

_BIOGEN_REPO = "molecularinformatics/Computational-ADME"
_BIOGEN_COMMIT = "b00df003de117ce9e5b381afd886095c5f2af2d5"
_RESULTS_COMMIT = "685c9c828b23d8672572c21f82bb7e0780dfba2f"
_AZ_REPO = "netknowledge/ADMET"
_AZ_COMMIT = "0fcce6a64d097d9283a28157cae7b903029ee98a"


def _split_file(endpoint: str, split: str) -> str:
    return f"splits/ADME_{endpoint}_{split}.csv"


def _raw_url(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


# Local file -> public origin (see the shared README's "Origin and licences").
RAW_FILES: dict[str, str] = {
    BIOGEN_FILE: _raw_url(_BIOGEN_REPO, _BIOGEN_COMMIT, "ADME_public_set_3521.csv"),
    **{
        _split_file(e, s): _raw_url(_BIOGEN_REPO, _BIOGEN_COMMIT, f"MPNN/ADME_{e}_{s}.csv")
        for e in ENDPOINTS
        for s in ("train", "test")
    },
    "external/PPB_AZ-hPPB.csv": _raw_url(_AZ_REPO, _AZ_COMMIT, "datasets/PPB_AZ-hPPB.csv"),
    "external/PPB_AZ-rPPB.csv": _raw_url(_AZ_REPO, _AZ_COMMIT, "datasets/PPB_AZ-rPPB.csv"),
    "external/microsomal_AZ-hLM.csv": _raw_url(_AZ_REPO, _AZ_COMMIT, "datasets/microsomal_AZ-hLM.csv"),
    "external/solubility_AZ-sol.csv": _raw_url(_AZ_REPO, _AZ_COMMIT, "datasets/solubility_AZ-sol.csv"),
}
# Published SHA-256 of each raw file (what fetch verifies and writes as SHA256SUMS).
RAW_SHA256: dict[str, str] = {
    "ADME_public_set_3521.csv": "2cfabc2667740c224487876c33b23124159ef43294e0f9e4d926cb6276c95a3b",
    "splits/ADME_HLM_test.csv": "b26b2a2199602b954d66b5daba4ca69c35916d5028b23091b229fc93efcd1dc1",
    "splits/ADME_HLM_train.csv": "00bad049ea72cda9fef62dd9f68411673b4de3cbf977efb948befd1ae3338819",
    "splits/ADME_MDR1_ER_test.csv": "c17a168d9e9d8ed0de67a1ab0191a795ae75181163b5d902db3a7f33ab42f303",
    "splits/ADME_MDR1_ER_train.csv": "5facb20d38628111469644db338a5351fa9e766adba4715292760f5a05ea07cc",
    "splits/ADME_RLM_test.csv": "7467799c8727be5599b0a76b08f60fbeec92bf9533cc8213a511b9f0b977b1c1",
    "splits/ADME_RLM_train.csv": "38144705d2809b08ba548bf6660a37b9ee30bd09eeef208e67af13a9fac27c26",
    "splits/ADME_Sol_test.csv": "8f9efd2deef045ddcfbcd871d458d3b619fa80463094fd0ae9dec3a2fa69718f",
    "splits/ADME_Sol_train.csv": "61386580c8d74867c9d7bdcccc0fc59943f872e1afb8f541ba3a92d1af270e08",
    "splits/ADME_hPPB_test.csv": "191a89a583571977b34297a61b724797cbdd288a3e80175edc8c62814a7ed089",
    "splits/ADME_hPPB_train.csv": "3f35823e1e8d156acef5d2a3e1ea506af4fc3b351ab804f6f5cadd5cba5ab77a",
    "splits/ADME_rPPB_test.csv": "9b3f624fe33c3979855cce4144b8c95d50b70de09b06d60448962170bfd952b4",
    "splits/ADME_rPPB_train.csv": "546b6ccc0ef67702df367328e90f64266564c627d8ad59e7fe228c8344f77537",
    "external/PPB_AZ-hPPB.csv": "6cde0af6e38dbbe3e4660890b09f9f00fae3bce3e086ee6bc3be47a73dd205ba",
    "external/PPB_AZ-rPPB.csv": "0452d6c52741490d9adfafa82b0578a3b7cb745892834a5a7184649b1ebb8f42",
    "external/microsomal_AZ-hLM.csv": "6c660e5d8938af3607fe6015c30978d9621c7a6e22785f269b9f5139e46bfa64",
    "external/solubility_AZ-sol.csv": "69fe32663bb0e002e94d779a55dacbbda107600c61d9d95a7e1ccc55c7221340",
    "paper_pearson_r.csv": "8a277ee030f5104706bef8c2c162e0b566483610a9e57916465e398205bb84f7",
}
# paper_pearson_r.csv was extracted from the repository's ADME_public_results.xlsx at
# commit _RESULTS_COMMIT; it has no raw URL of its own and is read from the shared folder.
RESULTS_SOURCE = _raw_url(_BIOGEN_REPO, _RESULTS_COMMIT, "ADME_public_results.xlsx")


def default_processed_dir() -> Path:
    """Where processed fang2023 files go by default: ``<home>/data/fang2023``."""
    return home() / "data" / NAME


def read_checksums(raw: Path) -> dict[str, str]:
    """``SHA256SUMS`` of a raw folder as {relative path: hex digest}."""
    sums_file = raw / "SHA256SUMS"
    if not sums_file.is_file():
        raise DataError(f"{sums_file}: checksum file not found (is {raw} the fang2023 folder?)")
    sums: dict[str, str] = {}
    for lineno, line in enumerate(sums_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64:
            raise DataError(f"{sums_file}, line {lineno}: expected '<sha256>  <path>', got {line!r}")
        sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def verify_checksums(raw: Path, files: Iterable[str]) -> None:
    """Check that each of ``files`` exists under ``raw`` and matches ``SHA256SUMS``."""
    sums = read_checksums(raw)
    for rel in files:
        path = raw / rel
        if not path.is_file():
            raise DataError(
                f"{path}: raw file missing; put the fang2023 files there or run "
                f"'python -m admet.data fetch fang2023 --dest {raw}'"
            )
        expected = sums.get(rel)
        if expected is None:
            raise DataError(f"{raw / 'SHA256SUMS'}: no checksum listed for {rel}")
        actual = sha256_file(path)
        if actual != expected:
            raise DataError(
                f"{path}: SHA-256 mismatch (expected {expected[:12]}..., got {actual[:12]}...); "
                "the file is corrupted or not the published version"
            )


def _inchikey(smiles: str) -> str | None:
    RDLogger.DisableLog("rdApp.*")
    try:
        mol = Chem.MolFromSmiles(smiles)
        return None if mol is None else Chem.MolToInchiKey(mol)
    finally:
        RDLogger.EnableLog("rdApp.*")


def _read_raw(path: Path, columns: list[str]) -> pd.DataFrame:
    frame = pd.read_csv(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; the file has {list(frame.columns)}")
    return frame


def _canonical_column(frame: pd.DataFrame, col: str, path: Path) -> list[str]:
    out = []
    for i, smi in enumerate(frame[col]):
        can = canonical_smiles(smi)
        if can is None:
            raise DataError(f"{path}, line {i + 2}, column {col!r}: cannot parse SMILES {smi!r}")
        out.append(can)
    return out


def _biogen_labels(raw: Path) -> dict[str, dict[str, list[float]]]:
    """Biogen's measured values per endpoint, keyed by InChIKey connectivity block."""
    path = raw / BIOGEN_FILE
    frame = _read_raw(path, ["SMILES", *BIOGEN_COLUMNS.values()])
    keys = [_inchikey(s) for s in frame["SMILES"]]
    labels: dict[str, dict[str, list[float]]] = {}
    for e, col in BIOGEN_COLUMNS.items():
        per_key: dict[str, list[float]] = {}
        for key, value in zip(keys, frame[col], strict=True):
            if key and pd.notna(value):
                per_key.setdefault(key[:14], []).append(float(value))
        labels[e] = per_key
    return labels


def _is_biogen(smiles: str, value: float, biogen: dict[str, list[float]]) -> bool:
    """A split row is Biogen's if the same skeleton (InChIKey connectivity) has the same
    value in the 3521 set; both are needed because the PPB splits mix laboratories and the
    two files were canonicalised by different RDKit versions."""
    key = _inchikey(smiles)
    return key is not None and any(abs(value - v) < 1e-6 for v in biogen.get(key[:14], ()))


def _split_rows(raw: Path, endpoint: str, split: str, biogen: dict[str, list[float]]) -> pd.DataFrame:
    """One endpoint split as long-format rows with quality and source."""
    path = raw / _split_file(endpoint, split)
    frame = _read_raw(path, ["smiles", "activity"])
    smiles = _canonical_column(frame, "smiles", path)
    values = frame["activity"].astype(float).to_numpy()
    if endpoint in ("hPPB", "rPPB"):
        high = np.array([_is_biogen(s, v, biogen) for s, v in zip(frame["smiles"], values, strict=True)])
    else:
        high = np.ones(len(frame), dtype=bool)  # every non-PPB split row is Biogen's
    return pd.DataFrame(
        {
            "SMILES": smiles,
            "Endpoint": endpoint,
            "Value": values,
            "Quality": np.where(high, "high", "medium"),
            "Source": np.where(high, "Biogen", "AstraZeneca"),
        }
    )


def _low_tier_rows(raw: Path) -> pd.DataFrame:
    """AstraZeneca clearance and solubility converted to Biogen units (quality ``low``)."""
    parts = []
    for endpoint, (rel, col) in LOW_TIER_FILES.items():
        path = raw / rel
        frame = _read_raw(path, ["canonical_smiles", col])
        smiles = _canonical_column(frame, "canonical_smiles", path)
        values = frame[col].astype(float).to_numpy()
        if endpoint == "HLM":
            values = values + HLM_LOG_FACTOR
        else:
            mw = np.array([Descriptors.MolWt(Chem.MolFromSmiles(s)) for s in smiles])
            values = values + np.log10(mw) + 3.0
        parts.append(
            pd.DataFrame(
                {
                    "SMILES": smiles,
                    "Endpoint": endpoint,
                    "Value": values,
                    "Quality": "low",
                    "Source": "AstraZeneca",
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _wide_table(long: pd.DataFrame) -> pd.DataFrame:
    """Long rows -> one row per (molecule, tier): replicates averaged, and a label measured
    in several tiers kept only in the best one."""
    tier = long["Quality"].map({q: i for i, q in enumerate(QUALITIES)})
    long = long.assign(_tier=tier)
    best = long.groupby(["SMILES", "Endpoint"])["_tier"].transform("min")
    long = long[long["_tier"] == best]
    wide = long.pivot_table(index=["SMILES", "_tier"], columns="Endpoint", values="Value", aggfunc="mean")
    wide = wide.reindex(columns=list(ENDPOINTS)).reset_index()
    source = long.groupby(["SMILES", "_tier"])["Source"].agg(lambda s: "+".join(sorted(set(s))))
    wide["Quality"] = wide["_tier"].map(dict(enumerate(QUALITIES)))
    wide["Source"] = source.reindex(pd.MultiIndex.from_frame(wide[["SMILES", "_tier"]])).to_numpy()
    wide = wide.sort_values(["SMILES", "_tier"], kind="mergesort").drop(columns="_tier")
    wide.columns.name = None
    return wide[["SMILES", *ENDPOINTS, "Quality", "Source"]].reset_index(drop=True)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write atomically with a fixed float format (byte-identical for identical input)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as fh:
        frame.to_csv(fh, index=False, float_format="%.10g", lineterminator="\n")
    os.replace(tmp, path)


def prepare(
    raw: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    augment: Iterable[str] = (),
    progress: bool = True,
) -> dict:
    """Build the processed fang2023 files from the raw folder; returns the summary.

    Args:
        raw: the raw fang2023 folder (default: resolved by :func:`admet.paths.raw_dataset_dir`).
        out: output folder (default :func:`default_processed_dir`).
        augment: extra tiers to add; only ``"low"`` exists.
        progress: show a progress bar.

    Raises:
        DataError: a raw file is missing, corrupted (checksum) or malformed. Nothing is
            written to ``out`` in that case.
    """
    raw_dir = raw_dataset_dir(NAME, raw)
    out_dir = Path(out) if out is not None else default_processed_dir()
    augment = sorted(set(augment))
    unknown = [a for a in augment if a != "low"]
    if unknown:
        raise DataError(f"--augment: unknown tier(s) {unknown}; only 'low' exists")
    if not raw_dir.is_dir():
        raise DataError(
            f"{raw_dir}: raw fang2023 folder not found; set ADMET_DATA_DIR, pass --raw, or run "
            f"'python -m admet.data fetch fang2023 --dest {raw_dir}'"
        )
    needed = [BIOGEN_FILE] + [_split_file(e, s) for e in ENDPOINTS for s in ("train", "test")]
    if augment:
        needed += [rel for rel, _ in LOW_TIER_FILES.values()]

    steps = ["checksums", "biogen", *[f"{e} splits" for e in ENDPOINTS], "tables", "write"]
    bar = tqdm(total=len(steps), desc="prepare fang2023", disable=not progress, unit="step")
    verify_checksums(raw_dir, needed)
    bar.update()
    biogen = _biogen_labels(raw_dir)
    bar.update()

    train_parts, test_parts = [], {}
    raw_rows: dict[str, dict[str, int]] = {}
    for e in ENDPOINTS:
        bar.set_postfix_str(e)
        train_parts.append(_split_rows(raw_dir, e, "train", biogen[e]))
        test_parts[e] = _split_rows(raw_dir, e, "test", biogen[e])
        raw_rows[e] = {"train": len(train_parts[-1]), "test": len(test_parts[e])}
        bar.update()
    if augment:
        train_parts.append(_low_tier_rows(raw_dir))
    long_train = pd.concat(train_parts, ignore_index=True)
    train = _wide_table(long_train)

    tests = {}
    for e, rows in test_parts.items():
        test = (
            rows.groupby("SMILES", sort=True)
            .agg(Value=("Value", "mean"), Quality=("Quality", "min"))
            .reset_index()
        )
        tests[e] = test.rename(columns={"Value": e})[["SMILES", e, "Quality"]]
    train_smiles = set(train["SMILES"])
    exclusions = pd.DataFrame(
        [(e, s) for e in ENDPOINTS for s in tests[e]["SMILES"] if s in train_smiles],
        columns=["Endpoint", "SMILES"],
    )
    bar.update()

    summary = _summary(long_train, train, tests, raw_rows, exclusions, augment)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(train, out_dir / "train.csv")
    for e, test in tests.items():
        _write_csv(test, out_dir / f"test_{e}.csv")
    _write_csv(exclusions, out_dir / "strict_exclusions.csv")
    text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, out_dir / "summary.json")
    bar.update()
    bar.close()
    return summary


def _summary(
    long_train: pd.DataFrame,
    train: pd.DataFrame,
    tests: dict[str, pd.DataFrame],
    raw_rows: dict[str, dict[str, int]],
    exclusions: pd.DataFrame,
    augment: list[str],
) -> dict:
    tasks = {}
    for e in ENDPOINTS:
        labelled = train[train[e].notna()]
        split_rows = long_train[(long_train["Endpoint"] == e) & (long_train["Quality"] != "low")]
        tasks[e] = {
            "split_rows": {
                "train": raw_rows[e]["train"],
                "test": raw_rows[e]["test"],
                "total": raw_rows[e]["train"] + raw_rows[e]["test"],
                "train_by_quality": split_rows["Quality"].value_counts().sort_index().to_dict(),
            },
            "train_labels": len(labelled),
            "train_labels_by_quality": {q: int((labelled["Quality"] == q).sum()) for q in QUALITIES},
            "test_labels": len(tests[e]),
            "test_labels_by_quality": tests[e]["Quality"].value_counts().sort_index().to_dict(),
            "strict_exclusions": int((exclusions["Endpoint"] == e).sum()),
        }
    return {
        "dataset": NAME,
        "augment": augment,
        "train_rows": len(train),
        "train_molecules": int(train["SMILES"].nunique()),
        "rows_by_quality": {q: int((train["Quality"] == q).sum()) for q in QUALITIES},
        "tasks": tasks,
        "notes": {
            "split_rows": "rows of the raw split files (the shared README's counts)",
            "train_labels": "labels in train.csv after averaging replicates and keeping the "
            "best tier per molecule and endpoint",
        },
    }


def ensure_prepared(
    out: str | os.PathLike[str] | None = None, raw: str | os.PathLike[str] | None = None
) -> Path:
    """The processed folder, preparing it from the raw files first if ``train.csv`` is absent."""
    out_dir = Path(out) if out is not None else default_processed_dir()
    if not (out_dir / "train.csv").is_file():
        logger.info("processed fang2023 data not found in %s; preparing it", out_dir)
        prepare(raw=raw, out=out_dir, progress=False)
    return out_dir


def fetch(dest: str | os.PathLike[str], timeout: float = 10.0, progress: bool = True) -> Path:
    """Download the raw fang2023 files into ``dest`` and write their ``SHA256SUMS``.

    ``paper_pearson_r.csv`` has no public CSV origin (it was extracted from
    ``ADME_public_results.xlsx``), so it is not downloaded. ``ADMET_FANG2023_MIRROR`` (a
    base URL laid out like the raw folder, e.g. an internal artifact store) replaces the
    public origins; the checksums are the same.
    """
    dest_dir = Path(dest)
    mirror = os.environ.get("ADMET_FANG2023_MIRROR", "").rstrip("/")
    urls = {rel: f"{mirror}/{rel}" for rel in RAW_FILES} if mirror else RAW_FILES
    fetch_files(urls, RAW_SHA256, dest_dir, timeout=timeout, progress=progress)
    sums = "".join(f"{RAW_SHA256[rel]}  {rel}\n" for rel in RAW_FILES)
    (dest_dir / "SHA256SUMS").write_text(sums)
    return dest_dir
