"""Item and event-type vocabularies: ids -> indices, 0 = padding, 1 = unknown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

PAD, UNK = 0, 1
_NULL_KEY = "\u0000"  # stands in for a null id: never a real id


@dataclass
class Vocab:
    """Item ids and event types in index order (index = position + 2), with each
    item's category (None where unknown)."""

    item_ids: List[str]
    event_types: List[str]
    categories: List[Optional[str]] = field(default_factory=list)
    _items: Optional[pd.Index] = field(default=None, repr=False, compare=False)
    _events: Optional[pd.Index] = field(default=None, repr=False, compare=False)
    _arrow: Dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_items(self) -> int:
        return len(self.item_ids) + 2

    @property
    def n_event_types(self) -> int:
        return len(self.event_types) + 2

    @staticmethod
    def _lookup(index: pd.Index, values: Sequence) -> np.ndarray:
        keys = (
            pd.Series(np.asarray(values, dtype=object), dtype=object).fillna(_NULL_KEY).to_numpy()
        )
        got = index.get_indexer(keys)
        return np.where(got >= 0, got + 2, UNK).astype(np.int64)

    def item_index(self, ids: Sequence) -> np.ndarray:
        """Item ids -> indices (UNK for unknown or null ids), vectorised."""
        if self._items is None:
            self._items = pd.Index(list(self.item_ids), dtype=object)
        return self._lookup(self._items, ids)

    def event_index(self, types: Sequence) -> np.ndarray:
        """Event types -> indices (UNK for unknown or null types), vectorised."""
        if self._events is None:
            self._events = pd.Index(list(self.event_types), dtype=object)
        return self._lookup(self._events, types)

    def arrow_ids(self, kind: str = "items"):
        """``pyarrow`` string array of the item ids (``kind='items'``) or event types
        (``'events'``) in index order minus 2: the lookup set of ``columns.index_in``."""
        if kind not in self._arrow:
            import pyarrow as pa

            self._arrow[kind] = pa.array(
                list(self.item_ids if kind == "items" else self.event_types), pa.string()
            )
        return self._arrow[kind]

    def item_id_array(self) -> np.ndarray:
        """Item id per index ('' for padding and unknown)."""
        return np.array(["", ""] + list(self.item_ids), dtype=object)

    def to_json(self) -> Dict:
        return {
            "item_ids": list(self.item_ids),
            "event_types": list(self.event_types),
            "categories": list(self.categories),
        }

    @classmethod
    def from_json(cls, d: Dict) -> Vocab:
        return cls(list(d["item_ids"]), list(d["event_types"]), list(d.get("categories", [])))
