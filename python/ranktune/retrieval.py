"""BM25 retrieval over a list of texts: what templates use for retrieved few-shot exemplars and
for their ``{context}`` slot (docs/retrieval.md).

    >>> r = ranktune.BM25Retriever(["apples and pears", "cherry pie"])
    >>> r.search("pears?", k=1)
    [(0, 0.98...)]
"""

from typing import List, Sequence, Tuple

from . import _core

__all__ = ["BM25Retriever", "bm25_tokens"]


def bm25_tokens(text: str) -> List[str]:
    """The normalised tokens BM25 compares: lower-cased Unicode words and numbers."""
    return list(_core.bm25_tokens(text))


class BM25Retriever:
    """Okapi BM25 (``k1``, ``b``) over `documents`, in their order. With `cache_file`, the index is
    read from there when it holds these documents' index, else built and written there."""

    def __init__(self, documents: Sequence[str], k1: float = 1.5, b: float = 0.75, cache_file: str = ""):
        self.documents = list(documents)
        self._core = _core.BM25Index(self.documents, k1, b, str(cache_file))

    def search(self, query: str, k: int) -> List[Tuple[int, float]]:
        """The k best (index, score) pairs, best first, ties in corpus order; the query's own text
        and repeated documents are left out; zero-score documents fill up to k in corpus order."""
        return [tuple(hit) for hit in self._core.search(query, int(k))]

    def retrieve(self, query: str, k: int) -> List[str]:
        """The texts of :meth:`search`'s documents."""
        return [self.documents[i] for i, _ in self.search(query, k)]

    def score(self, query: str, index: int) -> float:
        """The BM25 score of document `index` for `query`."""
        return self._core.score(query, int(index))

    @property
    def source(self) -> str:
        """How the index was obtained: "built", "cache hit", or rebuilt (missing/stale/corrupt cache)."""
        return self._core.source

    def __len__(self) -> int:
        return len(self._core)
