"""The verdict cache of a :class:`~octo.verifiers.pool.VerifierPool`.

A GRPO group of 8 completions often repeats an answer, and a probe meets the same gold many
times: math-verify's verdict on a (gold, answer) pair is kept so that the pair never goes to a
worker twice. The key is :attr:`~octo.verifiers.check.Prepared.key`: the cleaned gold and answer,
every box when there are several, and the completion itself when math-verify extracts the answer.
"""

from __future__ import annotations

import collections
import dataclasses
import threading

from octo.verifiers.check import Prepared, VerifyResult, _no_answer


def for_item(result: VerifyResult, prep: Prepared) -> VerifyResult:
    """Another item's result for an item with the same :attr:`Prepared.key`."""
    extracted = result.extracted if prep.extraction.deferred else prep.extraction.answer
    return dataclasses.replace(result, extracted=extracted, method=prep.extraction.method, n_boxed=prep.n_boxed)


class VerdictCache:
    """math-verify verdicts by :attr:`Prepared.key`, and whether a gold parses.

    Only verdicts math-verify reached (ok, wrong, gold_unparseable) are kept: a timeout may
    not repeat on a quieter machine. Least recently used entries go first.
    """

    def __init__(self, size: int):
        self.size = size
        self._pairs: collections.OrderedDict[tuple, VerifyResult] = collections.OrderedDict()
        self._golds: collections.OrderedDict[str, VerifyResult | None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def lookup(self, prep: Prepared) -> VerifyResult | None:
        if self.size == 0:
            return None
        with self._lock:
            if prep.gold in self._golds:
                self._golds.move_to_end(prep.gold)
                bad_gold = self._golds[prep.gold]
                if bad_gold is not None:
                    return for_item(bad_gold, prep)
                if prep.answer is None and not prep.extraction.deferred:
                    return _no_answer(prep)
            hit = self._pairs.get(prep.key)
            if hit is None:
                return None
            self._pairs.move_to_end(prep.key)
            return for_item(hit, prep)

    def store(self, prep: Prepared, result: VerifyResult) -> None:
        if self.size == 0 or result.checked_by != "math_verify":
            return
        with self._lock:
            if result.status == "gold_unparseable":
                self._golds[prep.gold] = result
            elif result.status in ("ok", "wrong"):
                self._golds[prep.gold] = None
                self._pairs[prep.key] = result
            for table in (self._pairs, self._golds):
                while len(table) > self.size:
                    table.popitem(last=False)
