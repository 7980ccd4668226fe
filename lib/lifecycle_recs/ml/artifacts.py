"""Model artifacts: save, resolve and load. Immutable once written.

An artifact is a directory ``<root>/<version>/`` holding the weights
(``model.pt``), ``config.json`` (model spec, window length, training date, ...),
``vocab.json``, ``metrics.json``, ``item_stats.npz`` (per-item popularity and
long-term-value association, computed at train time) and ``checksums.json``.
It is written under a temporary name and renamed into place in one step, so a
reader never sees half an artifact and nothing writes into it afterwards.

Promotion is per night: ``<root>/promoted/<D>`` names the version that night D
promoted (written atomically). Scoring night D uses the newest promotion on or
before D, so a backfill of an old date never scores with a model trained on
later data, and two nights promoting at once do not overwrite each other.
:func:`resolve` is the one place that reads the pointers (a ``LATEST`` file of
older roots is still honoured when no promotion exists).

What train measured on its training snapshot rather than learned (the repeat share that
decides whether seen items are filtered) is also kept beside the artifact, in
``<root>/_measured/<version>.json``: a retrain that lands on a version that already
exists (the same weights, saved before that figure existed) still records it, and
:func:`load` reads it over ``config.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np
import torch

from lifecycle_recs.ml.model import ModelSpec, SequenceModel
from lifecycle_recs.ml.vocab import Vocab

LATEST = "LATEST"
PROMOTED = "promoted"
INPUTS = "_inputs"
MEASURED = "_measured"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
FILES = ("model.pt", "config.json", "vocab.json", "metrics.json", "item_stats.npz")


@dataclass
class ItemStats:
    """Per item index: ``popularity`` (events in the training sequences) and ``ltv``
    (long-term-value association: smoothed share of its users still active H days later)."""

    popularity: np.ndarray
    ltv: np.ndarray

    @classmethod
    def empty(cls, n_items: int) -> ItemStats:
        return cls(np.zeros(n_items), np.zeros(n_items))


@dataclass
class Artifact:
    model: SequenceModel
    vocab: Vocab
    version: str
    max_len: int
    config: Dict
    item_stats: ItemStats
    path: str = ""
    metrics: Dict = field(default_factory=dict)


def _check_version(name: str, where: str) -> str:
    if not _VERSION.match(name or "") or ".." in name:
        raise ValueError(f"{where}: '{name}' is not a valid artifact version name")
    return name


# config.json keys that do not decide what the artifact scores (not part of its version)
UNVERSIONED = ("inputs_fingerprint",)


def version_of(model: SequenceModel, training_date: str, content: bytes = b"") -> str:
    """Deterministic: a rerun of the same night (same data, same seed) gives the
    same weights, hence the same version, hence identical output tables. ``content``
    (what else scoring reads: the artifact's configuration and item statistics) is
    part of it, so the same weights with another second stage, lapsed-users model or
    item statistics (a configuration change that does not move the weights) are a
    new version, never the old directory left as it is."""
    state = model.state_dict()
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().numpy().tobytes())
    h.update(content)
    return f"{model.spec.encoder}-{training_date}-{h.hexdigest()[:8]}"


def _content(max_len: int, extra: Dict, vocab: Vocab, item_stats: ItemStats) -> bytes:
    """The bytes of what an artifact scores with besides its weights (see :func:`version_of`)."""
    scored = {k: v for k, v in extra.items() if k not in UNVERSIONED}
    return (
        json.dumps(
            {"max_len": max_len, "vocab": vocab.to_json(), **scored}, sort_keys=True, default=str
        ).encode()
        + np.asarray(item_stats.popularity, np.float64).tobytes()
        + np.asarray(item_stats.ltv, np.float64).tobytes()
    )


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save(
    root: str,
    model: SequenceModel,
    vocab: Vocab,
    max_len: int,
    metrics: Dict,
    item_stats: ItemStats,
    training_date: str,
    extra: Optional[Dict] = None,
    promote: bool = True,
    night: Optional[str] = None,
    measured: Optional[Dict[str, Optional[float]]] = None,
) -> str:
    """Write a new artifact under ``root/<version>/`` (all at once) and, with
    ``promote``, promote it for ``night`` (default: the training date). Returns
    the directory. When that version exists already (a rerun), it is left as it is.
    ``measured`` (figures of the training data, not of the weights) goes into a new
    artifact's ``config.json`` and, every time, beside it (:func:`record_measured`)."""
    version = version_of(model, training_date, _content(max_len, extra or {}, vocab, item_stats))
    extra = {**(extra or {}), **(measured or {})}
    d = os.path.join(root, version)
    os.makedirs(root, exist_ok=True)
    if not os.path.exists(d):
        tmp = tempfile.mkdtemp(prefix=f".{version}.", dir=root)
        try:
            torch.save(model.state_dict(), os.path.join(tmp, "model.pt"))
            with open(os.path.join(tmp, "config.json"), "w") as fh:
                json.dump(
                    {
                        "spec": model.spec.to_dict(),
                        "max_len": max_len,
                        "version": version,
                        "training_date": training_date,
                        **extra,
                    },
                    fh,
                    indent=1,
                )
            with open(os.path.join(tmp, "vocab.json"), "w") as fh:
                json.dump(vocab.to_json(), fh)
            with open(os.path.join(tmp, "metrics.json"), "w") as fh:
                json.dump(metrics, fh, indent=1, default=float)
            np.savez(
                os.path.join(tmp, "item_stats.npz"),
                popularity=item_stats.popularity,
                ltv=item_stats.ltv,
            )
            with open(os.path.join(tmp, "checksums.json"), "w") as fh:
                json.dump({f: _sha256(os.path.join(tmp, f)) for f in FILES}, fh, indent=1)
            os.rename(tmp, d)  # atomic: the version appears whole or not at all
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not os.path.exists(d):
                raise
    if measured:
        record_measured(root, version, measured)
    if promote:
        promote_version(root, version, night or training_date)
    return d


def promote_version(root: str, version: str, night: str) -> str:
    """Make ``version`` the model of night ``night`` (and later nights until the next
    promotion): one pointer file per night, replaced atomically (a private temp file
    per call, so concurrent promotions never share one)."""
    _check_version(version, "promote")
    if not _DATE.match(str(night)):
        raise ValueError(f"promote: night must be YYYY-MM-DD, got {night!r}")
    if not os.path.exists(os.path.join(root, version, "model.pt")):
        raise FileNotFoundError(f"promote: no artifact {version} under {root}")
    _write_pointer(os.path.join(root, PROMOTED), str(night), version)
    return version


def _write_pointer(directory: str, name: str, text: str) -> None:
    """``directory/name`` holds ``text`` (a version, or a small JSON), replaced atomically
    (a private temp file per call, so concurrent writers never share one)."""
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, os.path.join(directory, name))  # atomic switch


def _check_measured(values, where: str) -> Dict[str, Optional[float]]:
    if not isinstance(values, dict) or not all(
        isinstance(k, str)
        and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)))
        for k, v in values.items()
    ):
        raise ValueError(
            f"{where}: measured figures must be a mapping of names to numbers or null, got "
            f"{values!r}"
        )
    return values


def record_measured(root: str, version: str, values: Dict[str, Optional[float]]) -> None:
    """Record what the last training of ``version`` measured on its snapshot
    (``<root>/_measured/<version>.json``, replaced atomically; the artifact itself is
    never written again). :func:`load` reads these over the artifact's ``config.json``."""
    _check_version(version, "record_measured")
    _write_pointer(
        os.path.join(root, MEASURED),
        f"{version}.json",
        json.dumps(_check_measured(values, "record_measured"), sort_keys=True),
    )


def measured_of(path: str, version: str) -> Dict[str, Optional[float]]:
    """The figures recorded beside the artifact directory ``path`` (empty when none)."""
    f = os.path.join(
        os.path.dirname(os.path.abspath(path)), MEASURED, f"{_check_version(version, path)}.json"
    )
    if not os.path.isfile(f):
        return {}
    with open(f) as fh:
        try:
            values = json.load(fh)
        except json.JSONDecodeError as e:
            raise ValueError(f"{f}: not JSON ({e})") from e
    return _check_measured(values, f)


def promoted_version(root: str, as_of: Optional[str] = None) -> Optional[str]:
    """The version promoted on the latest night <= ``as_of`` (any night when None);
    a ``LATEST`` file of an older root when nothing is promoted; else None."""
    pdir = os.path.join(root, PROMOTED)
    nights = sorted(n for n in (os.listdir(pdir) if os.path.isdir(pdir) else []) if _DATE.match(n))
    if as_of is not None:
        nights = [n for n in nights if n <= str(as_of)]
    if nights:
        f = os.path.join(pdir, nights[-1])
        with open(f) as fh:
            return _check_version(fh.read().strip(), f)
    latest = os.path.join(root, LATEST)
    if os.path.exists(latest) and not os.path.isdir(pdir):
        with open(latest) as fh:
            return _check_version(fh.read().strip(), latest)
    return None


def resolve(path: str, as_of: Optional[str] = None) -> str:
    """An artifact directory as given, or the one promoted for night ``as_of`` under a root."""
    if not os.path.exists(os.path.join(path, "model.pt")):
        version = promoted_version(path, as_of)
        if version is None:
            when = f" on or before {as_of}" if as_of else ""
            raise FileNotFoundError(
                f"no model artifact promoted{when} under {path}: run the train stage first"
            )
        path = os.path.join(path, version)
    if not os.path.exists(os.path.join(path, "model.pt")):
        raise FileNotFoundError(f"no model artifact at {path}: run the train stage first")
    return path


def check(path: str) -> None:
    """Raise when a file of the artifact at ``path`` does not match its checksums."""
    sums_path = os.path.join(path, "checksums.json")
    if os.path.exists(sums_path):
        with open(sums_path) as fh:
            sums = json.load(fh)
        bad = [f for f, s in sums.items() if f in FILES and _sha256(os.path.join(path, f)) != s]
        if bad:
            raise ValueError(f"artifact {path}: file(s) {bad} do not match checksums.json")


def record_inputs(root: str, version: str, inputs: str) -> None:
    """Remember that ``version`` was trained from inputs with the fingerprint ``inputs``
    (``<root>/_inputs/<inputs>``, replaced atomically). Kept beside the artifacts, not in
    them: a version that already existed (saved before fingerprints, or trained again
    from other inputs to the same weights) is never written again."""
    _check_version(version, "record_inputs")
    if not re.fullmatch(r"[0-9a-f]{8,64}", inputs or ""):
        raise ValueError(f"record_inputs: {inputs!r} is not a fingerprint")
    _write_pointer(os.path.join(root, INPUTS), inputs, version)


def trained_from(root: str, training_date: str, inputs: str) -> Optional[str]:
    """The version recorded as trained at ``training_date`` from inputs with the
    fingerprint ``inputs`` (None when there is none, or it is gone)."""
    f = os.path.join(root, INPUTS, inputs)
    if not re.fullmatch(r"[0-9a-f]{8,64}", inputs or "") or not os.path.isfile(f):
        return None
    with open(f) as fh:
        version = _check_version(fh.read().strip(), f)
    conf = os.path.join(root, version, "config.json")
    if not os.path.isfile(conf):
        return None
    with open(conf) as fh:
        return version if json.load(fh).get("training_date") == training_date else None


def load(path: str, device: str = "cpu", verify: bool = True) -> Artifact:
    """Load an artifact directory, or the LATEST one under an artifacts root
    (weights only: no pickled code is executed; checksums verified)."""
    path = resolve(path)
    if verify:
        check(path)
    with open(os.path.join(path, "config.json")) as fh:
        cfg = json.load(fh)
    _check_version(cfg["version"], os.path.join(path, "config.json"))
    cfg.update(
        measured_of(path, cfg["version"])
    )  # the latest training's figures of the same version
    with open(os.path.join(path, "vocab.json")) as fh:
        vocab = Vocab.from_json(json.load(fh))
    metrics = {}
    if os.path.exists(os.path.join(path, "metrics.json")):
        with open(os.path.join(path, "metrics.json")) as fh:
            metrics = json.load(fh)
    model = SequenceModel(ModelSpec(**cfg["spec"]))
    model.load_state_dict(
        torch.load(os.path.join(path, "model.pt"), map_location="cpu", weights_only=True)
    )
    model.to(device).eval()
    stats_path = os.path.join(path, "item_stats.npz")
    if os.path.exists(stats_path):
        with np.load(stats_path) as st:
            stats = ItemStats(
                np.asarray(st["popularity"], np.float64), np.asarray(st["ltv"], np.float64)
            )
    else:
        stats = ItemStats.empty(vocab.n_items)
    return Artifact(model, vocab, cfg["version"], int(cfg["max_len"]), cfg, stats, path, metrics)
