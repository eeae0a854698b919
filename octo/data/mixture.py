"""Token-weighted mixture of sources.

Recipe weights are shares of *tokens* (as OctoThinker's tables), not documents. The next document
comes from the source whose deficit ``w_s * T - seen_s`` is largest (T = tokens drawn so far), so
every share stays within one document of its target; randomness lives in each source's seeded
document order. The state (tokens seen per source, each stream's position) resumes exactly.
"""

from __future__ import annotations

from octo.data.sources import Document, DocStream


class TokenMixture:
    def __init__(self, streams: dict[str, DocStream], weights: dict[str, float]):
        self.weights = {k: w for k, w in weights.items() if w > 0}
        self.streams = {k: streams[k] for k in self.weights}
        self.seen = {k: 0 for k in self.weights}
        # Ties broken by weight then name, so the order never depends on dict iteration.
        self._names = sorted(self.weights, key=lambda k: (-self.weights[k], k))

    def next(self) -> tuple[str, Document]:
        total = sum(self.seen.values())
        name = max(self._names, key=lambda k: self.weights[k] * total - self.seen[k])
        doc = self.streams[name].next()
        self.seen[name] += len(doc.ids)
        return name, doc

    def shares(self) -> dict[str, float]:
        total = sum(self.seen.values()) or 1
        return {k: v / total for k, v in self.seen.items()}

    def state_dict(self) -> dict:
        return {"seen": dict(self.seen), "streams": {k: s.state_dict() for k, s in self.streams.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.seen = {k: int(state["seen"][k]) for k in self.weights}
        for k, s in self.streams.items():
            s.load_state_dict(state["streams"][k])
