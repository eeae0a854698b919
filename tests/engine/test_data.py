"""Sources, token-weighted mixture, packing with document isolation."""

from __future__ import annotations

import json

import pytest

from octo.config import SourceConfig
from octo.data.mixture import TokenMixture
from octo.data.packing import Packer
from octo.data.sources import Document, DocStream, LoadedSource
from octo.errors import OctoError


def _docs(n, length, start=0):
    return [Document(list(range(start + i * 1000, start + i * 1000 + length - 1)) + [0], 0) for i in range(n)]


def test_mixture_token_shares_within_one_point_after_1m_tokens():
    # documents of very different lengths: shares are of tokens, not documents
    streams = {"a": DocStream(_docs(50, 20), 0, "a"), "b": DocStream(_docs(50, 300), 0, "b"),
               "c": DocStream(_docs(50, 75), 0, "c")}
    weights = {"a": 0.55, "b": 0.15, "c": 0.30}
    mix = TokenMixture(streams, weights)
    while sum(mix.seen.values()) < 1_000_000:
        mix.next()
    for k, w in weights.items():
        assert abs(mix.shares()[k] - w) < 0.01


def test_mixture_resume_reads_the_same_next_documents():
    def fresh():
        return TokenMixture({"a": DocStream(_docs(7, 5), 1, "a"), "b": DocStream(_docs(5, 9, 500), 1, "b")},
                            {"a": 0.4, "b": 0.6})

    ref = fresh()
    seq = [(n, d.ids[0]) for n, d in (ref.next() for _ in range(60))]
    first = fresh()
    for _ in range(23):
        first.next()
    state = json.loads(json.dumps(first.state_dict()))  # the state survives a JSON round trip
    resumed = fresh()
    resumed.load_state_dict(state)
    assert [(n, d.ids[0]) for n, d in (resumed.next() for _ in range(37))] == seq[23:]


def test_packer_positions_labels_and_resume():
    mix = TokenMixture({"a": DocStream(_docs(10, 7), 0, "a")}, {"a": 1.0})
    packer = Packer(mix, 10)
    ids, pos, lab = packer.next_sequence()
    assert pos == [0, 1, 2, 3, 4, 5, 6, 0, 1, 2]
    assert lab[0] == -100 and lab[7] == -100 and lab[1:7] == ids[1:7]
    ids2, pos2, _ = packer.next_sequence()
    assert pos2[:4] == [0, 1, 2, 3] and pos2[4] == 0   # the cut document continues, positions restart
    state = packer.state_dict()
    nxt = packer.next_sequence()
    again = Packer(TokenMixture({"a": DocStream(_docs(10, 7), 0, "a")}, {"a": 1.0}), 10)
    again.load_state_dict(state)
    assert again.next_sequence() == nxt


def test_prompt_masking_option():
    docs = [Document([5, 6, 7, 8, 9, 0], 3)]
    packer = Packer(TokenMixture({"a": DocStream(docs, 0, "a")}, {"a": 1.0}), 6, mask_prompt=True)
    _, _, lab = packer.next_sequence()
    assert lab == [-100, -100, -100, 8, 9, 0]


def test_packing_isolation_logits_unchanged_by_neighbour(tiny_ctx):
    """Perturbing document A leaves the logits of document B in the same pack bit-identical."""
    import torch

    from octo.data.packing import packed_logits
    from octo.model import build_toy_model

    model = build_toy_model(tiny_ctx.recipe.model, tiny_ctx.tokenizer, seed=0).eval()
    a = list(range(5, 25))
    a_changed = list(range(40, 60))
    b = list(range(100, 130))

    def logits(first):
        ids = torch.tensor([first + b])
        pos = torch.tensor([list(range(len(first))) + list(range(len(b)))])
        with torch.no_grad():
            return packed_logits(model, ids, pos)[0, len(first):]

    base, changed = logits(a), logits(a_changed)
    assert torch.equal(base, changed)
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([b])).logits[0]
    assert torch.allclose(base, alone, atol=1e-5)
    # without restarting positions the documents interact: the position restart is what isolates them
    with torch.no_grad():
        mixed = model(input_ids=torch.tensor([a_changed + b]), use_cache=False).logits[0, len(a):]
    assert not torch.allclose(mixed, alone, atol=1e-3)


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_source_errors_are_one_line(tmp_path, tiny_ctx):
    tok = tiny_ctx.tokenizer
    cases = {
        "missing.jsonl": (None, "does not exist"),
        "badjson.jsonl": ('{"text": "ok"}\n{not json\n', "line 2 is not valid JSON"),
        "nofield.jsonl": ('{"body": "x"}\n', "has no field 'text'"),
        "empty.jsonl": ("\n\n", "holds no documents"),
        "blank.jsonl": ('{"text": "   "}\n', "empty document"),
        "data.csv": ("a,b\n", "unsupported type"),
    }
    for name, (content, fragment) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_text(content)
        with pytest.raises(OctoError) as info:
            LoadedSource("s", SourceConfig(path=str(path)), tmp_path, tok, 0)
        assert fragment in str(info.value) and "\n" not in str(info.value), name


def test_source_templates_and_field_mapping(tmp_path, tiny_ctx):
    tok = tiny_ctx.tokenizer
    path = tmp_path / "qa.jsonl"
    _write(path, [{"question": f"Q{i}?", "solution": "1+1=2\n", "final": "\\boxed{2}"} for i in range(4)])
    src = LoadedSource("qa", SourceConfig(path=str(path), template="QA", heldout=1,
                                          fields={"query": "question", "cot": "solution", "content": "final"}),
                       tmp_path, tok, 0)
    assert len(src.train) == 3 and len(src.heldout) == 1
    doc = src.train[0]
    text = tok.decode(doc.ids)
    assert text.startswith("User:Q") and "\nAssistant:<think>\n1+1=2\n</think>\n\\boxed{2}" in text
    assert doc.ids[-1] == tok.eos_token_id
    prompt = tok.decode(doc.ids[:doc.n_prompt])
    assert prompt.endswith("Assistant:<think>\n")
    txt = tmp_path / "t.txt"
    txt.write_text("first doc\n\nsecond doc\n\n\nthird doc")
    raw = LoadedSource("t", SourceConfig(path=str(txt), heldout=0), tmp_path, tok, 0)
    assert sorted(tok.decode(d.ids[:-1]) for d in raw.train) == ["first doc", "second doc", "third doc"]
    with pytest.raises(OctoError, match="has no slot"):
        LoadedSource("qa", SourceConfig(path=str(path), template="IF", fields={"cot": "x"}), tmp_path, tok, 0)
