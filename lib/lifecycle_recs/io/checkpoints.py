"""What an incremental source keeps between nights, in one folder per source under the
lakehouse (any path every node can read): ``<lakehouse>/_checkpoints/ingest/<source>/``.

* ``stream/``: Spark's own streaming checkpoint (which files were read, which micro-batch
  committed); never written by this code.
* ``state.json``: the parsing settings the files were read under and their fingerprint, the
  schema captured from the files on the first night (never re-inferred), and the id that makes
  the Delta writes of each micro-batch idempotent (``txnAppId``; a new checkpoint gets a new
  one, so its batch numbers never collide with an old checkpoint's).
"""

from __future__ import annotations

import json
import os
import re
from typing import Dict, Optional

from lifecycle_recs.config import Config
from lifecycle_recs.fs import filesystem, remove_dir

STATE = "state.json"


def directory(cfg: Config) -> str:
    """The checkpoint folder of the configured source."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", cfg.source.name or cfg.source.kind)
    return os.path.join(cfg.lakehouse, "_checkpoints", "ingest", name)


def stream_location(cfg: Config) -> str:
    return os.path.join(directory(cfg), "stream")


def load_state(cfg: Config) -> Optional[Dict]:
    """The saved state of the source, or None on its first night."""
    fs, path = filesystem(os.path.join(directory(cfg), STATE))
    try:
        with fs.open_input_stream(path) as fh:
            return json.loads(fh.read().decode())
    except FileNotFoundError:
        return None


def save_state(cfg: Config, state: Dict) -> None:
    """Write the state whole (a temporary file, then a rename where the store has one)."""
    fs, root = filesystem(directory(cfg))
    fs.create_dir(root, recursive=True)
    tmp, final = f"{root}/.{STATE}.tmp", f"{root}/{STATE}"
    with fs.open_output_stream(tmp) as fh:
        fh.write(json.dumps(state, indent=1, sort_keys=True).encode())
    fs.move(tmp, final)


def remove_stream(cfg: Config) -> None:
    """Forget which files were read (a restatement reads them all again)."""
    remove_dir(stream_location(cfg))
