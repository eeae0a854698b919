"""Packing documents into fixed-length sequences with no padding.

Documents (each ending in EOS) are concatenated and cut into ``seq_len`` windows, a cut document
continuing in the next window. ``position_ids`` restart at every document start, which transformers
turns into a block-diagonal attention mask; each document's first token gets label -100, so nothing
crosses a document boundary. ``mask_prompt`` masks IF/QA prompts out of the loss (off by default,
seed 000). :func:`pack_whole_documents` packs for evaluation: whole documents, padded.
"""

from __future__ import annotations

from octo.config import stage_seed
from octo.data.mixture import TokenMixture

IGNORE = -100


class Packer:
    def __init__(self, mixture: TokenMixture, seq_len: int, *, mask_prompt: bool = False):
        self.mixture = mixture
        self.seq_len = seq_len
        self.mask_prompt = mask_prompt
        self._ids: list[int] = []
        self._pos: list[int] = []
        self._lab: list[int] = []
        # per-token source ids of the last next_sequence(), for the KL on replay tokens (track_sources)
        self.track_sources = False
        self.source_names = list(mixture.weights)
        self._src: list[int] = []
        self.last_sources: list[int] = []

    def _pull(self) -> None:
        name, doc = self.mixture.next()
        n = len(doc.ids)
        self._ids.extend(doc.ids)
        self._pos.extend(range(n))
        labels = list(doc.ids)
        labels[0] = IGNORE
        if self.mask_prompt:
            for i in range(min(doc.n_prompt, n)):
                labels[i] = IGNORE
        self._lab.extend(labels)
        if self.track_sources:
            self._src.extend([self.source_names.index(name)] * n)

    def next_sequence(self) -> tuple[list[int], list[int], list[int]]:
        while len(self._ids) < self.seq_len:
            self._pull()
        L = self.seq_len
        ids, pos, lab = self._ids[:L], self._pos[:L], self._lab[:L]
        self._ids, self._pos, self._lab = self._ids[L:], self._pos[L:], self._lab[L:]
        if self.track_sources:
            self.last_sources, self._src = self._src[:L], self._src[L:]
        if self._pos and self._pos[0] != 0:
            # the rest of a cut document starts a new window: positions restart there
            start = self._pos[0]
            k = 0
            while k < len(self._pos) and (k == 0 or self._pos[k] != 0):
                self._pos[k] -= start
                k += 1
        return ids, pos, lab

    def next_batch(self, batch_size: int):
        import torch

        seqs, srcs = [], []
        for _ in range(batch_size):
            seqs.append(self.next_sequence())
            srcs.append(self.last_sources)
        batch = {
            "input_ids": torch.tensor([s[0] for s in seqs], dtype=torch.long),
            "position_ids": torch.tensor([s[1] for s in seqs], dtype=torch.long),
            "labels": torch.tensor([s[2] for s in seqs], dtype=torch.long),
        }
        if self.track_sources:
            batch["source_ids"] = torch.tensor(srcs, dtype=torch.long)
        return batch

    def state_dict(self) -> dict:
        state = {"mixture": self.mixture.state_dict(), "ids": list(self._ids), "pos": list(self._pos),
                 "lab": list(self._lab)}
        if self.track_sources:
            state["src"] = list(self._src)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.mixture.load_state_dict(state["mixture"])
        self._ids, self._pos, self._lab = list(state["ids"]), list(state["pos"]), list(state["lab"])
        if self.track_sources:  # -1: tokens buffered by a packer that did not track sources
            self._src = [int(x) for x in state.get("src", [-1] * len(self._ids))]


def pack_whole_documents(docs: list[list[int]], *, seq_len: int, pad_id: int, batch_size: int = 16):
    """Evaluation packing: whole documents (cut at ``seq_len``) in padded rows, with :class:`Packer`'s conventions."""
    import torch

    rows: list[list[list[int]]] = [[]]
    used = 0
    for d in docs:
        d = d[:seq_len]
        if used + len(d) > seq_len and rows[-1]:
            rows.append([])
            used = 0
        rows[-1].append(d)
        used += len(d)
    rows = [r for r in rows if r]
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        width = max(sum(len(d) for d in r) for r in chunk)
        ids, pos, lab = [], [], []
        for r in chunk:
            a, b, c = [], [], []
            for d in r:
                a += d
                b += list(range(len(d)))
                c += [IGNORE] + d[1:]
            pad = width - len(a)
            ids.append(a + [pad_id] * pad)
            pos.append(b + list(range(pad)))
            lab.append(c + [IGNORE] * pad)
        yield {"input_ids": torch.tensor(ids), "position_ids": torch.tensor(pos), "labels": torch.tensor(lab)}


def packed_logits(model, input_ids, position_ids):
    """Logits of packed rows with attention isolated per document. transformers builds the block-diagonal mask from
    ``position_ids`` only without an attention mask and KV cache; in eval mode a model would otherwise make a cache and
    attend across documents."""
    return model(input_ids=input_ids, position_ids=position_ids, use_cache=False).logits


def stage_packer(ctx, stage: str) -> Packer:
    """The packer stage ``stage`` trains on (:func:`octo.cpt.trainer.run_stage` and ``octo data preview``)."""
    recipe = ctx.recipe
    scfg = recipe.cpt.stages[stage]
    seed = stage_seed(recipe, stage)
    streams = {name: ctx.source(name).doc_stream(seed) for name in scfg.mixture}
    return Packer(TokenMixture(streams, scfg.mixture), recipe.cpt.seq_len, mask_prompt=recipe.cpt.mask_prompt)
