"""Sources, token-weighted mixture, packing with document isolation."""

from __future__ import annotations

import json

import pytest

from octo.config import SourceConfig
from octo.data.mixture import TokenMixture
from octo.data.packing import Packer
from octo.data.sources import DocStream, Document, LoadedSource
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


def test_a_held_out_document_is_never_trained_on_even_when_the_source_repeats_it(tmp_path, tiny_ctx):
    tok = tiny_ctx.tokenizer
    path = tmp_path / "dup.jsonl"
    _write(path, [{"text": f"doc {i % 5}"} for i in range(20)])  # 5 distinct texts, 4 copies each
    src = LoadedSource("d", SourceConfig(path=str(path), heldout=2), tmp_path, tok, 0)
    held = {tok.decode(d.ids) for d in src.heldout}
    train = [tok.decode(d.ids) for d in src.train]
    assert len(held) >= 1 and not held & set(train)
    assert src.dropped_heldout == 20 - 2 - len(train) > 0
    assert len(set(train)) == 5 - len(held)
    everything_held = tmp_path / "same.jsonl"
    _write(everything_held, [{"text": "the same doc"}] * 6)
    with pytest.raises(OctoError, match="no training documents left after holding out 2 \\(and 4 copies"):
        LoadedSource("same", SourceConfig(path=str(everything_held), heldout=2), tmp_path, tok, 0)


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


# --- recipe options: cpt.long_docs, cpt.mask_prompt ----------------------------------------------------

def _variant(ctx, **cpt):
    """A context reading ``ctx``'s prepared run directory with other cpt settings (read only, no lock)."""
    import dataclasses

    from octo.context import RunContext

    recipe = dataclasses.replace(ctx.recipe, cpt=dataclasses.replace(ctx.recipe.cpt, **cpt))
    return RunContext(recipe)


def test_long_docs_split_keeps_and_drop_removes_documents_longer_than_seq_len(tiny_ctx):
    from octo.data.cli import _segments, draw

    seq_len = 128  # the toy long-CoT documents are 110-272 tokens, the others shorter
    split = _variant(tiny_ctx, seq_len=seq_len, long_docs="split")
    drop = _variant(tiny_ctx, seq_len=seq_len, long_docs="drop")
    for name in ("long-am", "long-openr1", "mathweb", "if"):
        all_docs = split.source(name).train
        n_long = sum(len(d.ids) > seq_len for d in all_docs)
        assert split.source(name).dropped_long == 0
        assert drop.source(name).dropped_long == n_long
        assert [d.ids for d in drop.source(name).train] == [d.ids for d in all_docs if len(d.ids) <= seq_len]
    assert 0 < drop.source("long-am").dropped_long < len(split.source("long-am").train)
    assert drop.source("if").dropped_long == 0
    # split (the default): long documents are drawn and continue in the next window, where positions restart
    res = draw(split, "decay-long", 40 * seq_len)
    assert sum(len(d.ids) > seq_len for _, d in res.pulled) > 3
    for k, (_ids, pos, _lab) in enumerate(res.sequences):
        expected = [p for _i, _n, lo, hi, _len in _segments(res, k, seq_len) for p in range(hi - lo)]
        assert pos == expected
    # drop: no drawn document is longer than seq_len, and the stream is otherwise the same sampler
    res = draw(drop, "decay-long", 40 * seq_len)
    assert all(len(d.ids) <= seq_len for _, d in res.pulled)
    assert {n for n, _ in res.pulled} == set(drop.recipe.cpt.stages["decay-long"].mixture)


def test_long_docs_drop_error_when_nothing_fits(tmp_path, tiny_ctx):
    path = tmp_path / "long.jsonl"
    _write(path, [{"text": "word " * 200} for _ in range(3)])
    with pytest.raises(OctoError, match="all 3 training documents are longer than seq_len=16"):
        LoadedSource("l", SourceConfig(path=str(path), heldout=0), tmp_path, tiny_ctx.tokenizer, 0, max_len=16)


def test_long_docs_drop_is_counted_in_the_manifest(tiny_recipe):
    import dataclasses

    from octo.context import RunContext
    from octo.runio import read_json

    recipe = dataclasses.replace(tiny_recipe, cpt=dataclasses.replace(tiny_recipe.cpt, long_docs="drop",
                                                                      seq_len=128))
    ctx = RunContext(recipe)
    ctx.prepare()
    try:
        n = ctx.source("long-am").dropped_long
        assert n > 0
        assert read_json(ctx.run_dir / "manifest.json")["data_long_docs_dropped"] == {"long-am": n}
    finally:
        ctx.release()


def test_held_out_copies_left_out_are_counted_in_the_manifest_and_said_once_per_run(tiny_recipe, capsys):
    from octo.context import RunContext
    from octo.runio import read_json

    said = []
    for _ in range(2):  # a second process on the same run directory
        ctx = RunContext(tiny_recipe)
        ctx.prepare()
        try:
            capsys.readouterr()
            counts = {name: ctx.source(name).dropped_heldout for name in tiny_recipe.data.sources}
            said.append(capsys.readouterr().err)
        finally:
            ctx.release()
    left_out = {name: n for name, n in counts.items() if n}
    assert left_out  # the toy world's IF source repeats its short instructions
    assert read_json(ctx.run_dir / "manifest.json")["data_heldout_copies_dropped"] == left_out
    for name, n in left_out.items():
        assert f"source '{name}': left out {n} training document" in said[0]
    assert "left out" not in said[1]


def _expected_labels(pulled, seq_len, n_seq, mask_prompt):
    flat = []
    for _, doc in pulled:
        lab = list(doc.ids)
        lab[0] = -100
        if mask_prompt:
            lab[:doc.n_prompt] = [-100] * doc.n_prompt
        flat += lab
    return [flat[k * seq_len:(k + 1) * seq_len] for k in range(n_seq)]


@pytest.mark.parametrize("mask_prompt", [True, False])
def test_mask_prompt_from_the_recipe_labels_if_and_qa_prompts(tiny_ctx, mask_prompt):
    from octo.data.cli import draw

    ctx = _variant(tiny_ctx, mask_prompt=mask_prompt)
    res = draw(ctx, "decay-hybrid", 4096)  # IF (if) and QA (qa-omi2, qa-numina, long-openr1) sources
    seq_len = ctx.recipe.cpt.seq_len
    labels = [s[2] for s in res.sequences]
    assert labels == _expected_labels(res.pulled, seq_len, len(res.sequences), mask_prompt)
    prompted = [(n, d) for n, d in res.pulled if d.n_prompt]
    assert {n for n, _ in prompted} >= {"if", "qa-omi2", "long-openr1"}
    assert all(n in ("if", "qa-omi2", "qa-numina", "long-openr1") for n, _ in prompted)
    tok = ctx.tokenizer
    for name, doc in prompted[:6]:
        prompt = tok.decode(doc.ids[:doc.n_prompt])
        assert prompt.startswith("User:") and prompt.endswith("Assistant:" if name == "if" else "Assistant:<think>\n")
    masked = sum(x == -100 for row in labels for x in row)
    n_docs = sum(1 for s in res.sequences for p in s[1] if p == 0)
    if mask_prompt:
        assert masked > n_docs + 100  # far more than one first token per document
    else:
        assert masked <= n_docs + 1


def test_trainer_builds_its_packer_with_the_recipe_options(tiny_ctx, monkeypatch):
    """The trainer's Packer gets cpt.mask_prompt and draws exactly what stage_packer (octo data preview) draws."""
    from octo.cpt.trainer import run_stage
    from octo.data import packing

    class Stop(Exception):
        pass

    built = []

    class Recording(packing.Packer):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            built.append(self)
            raise Stop

    ctx = _variant(tiny_ctx, mask_prompt=True, long_docs="drop")
    real = packing.Packer
    monkeypatch.setattr(packing, "Packer", Recording)
    with pytest.raises(Stop):
        run_stage(ctx, "decay-short")
    monkeypatch.setattr(packing, "Packer", real)
    trainer_packer = built[0]
    assert trainer_packer.mask_prompt is True and trainer_packer.seq_len == ctx.recipe.cpt.seq_len
    mine = packing.stage_packer(ctx, "decay-short")
    assert [trainer_packer.next_sequence() for _ in range(8)] == [mine.next_sequence() for _ in range(8)]


def _with_stage_seed(ctx, stage, seed, **fields):
    """A context reading ``ctx``'s run directory whose ``stage`` has its own seed (read only, no lock)."""
    import dataclasses

    from octo.context import RunContext

    cpt = ctx.recipe.cpt
    stages = dict(cpt.stages, **{stage: dataclasses.replace(cpt.stages[stage], seed=seed, **fields)})
    return RunContext(dataclasses.replace(ctx.recipe, cpt=dataclasses.replace(cpt, stages=stages)))


def test_a_stage_seed_draws_other_documents_and_the_default_is_the_recipe_seed(tiny_ctx):
    """cpt.stages.<name>.seed makes a replicate draw: the same mixture from other documents in another order; left
    unset, or set to the recipe's seed, the stage draws what it always drew."""
    from octo.config import stage_seed
    from octo.data.cli import draw, render

    def docs(ctx):
        return [(n, d.ids) for n, d in draw(ctx, "decay-short", 4096).pulled]

    base, seed = docs(tiny_ctx), tiny_ctx.recipe.seed + 1
    assert stage_seed(tiny_ctx.recipe, "decay-short") == tiny_ctx.recipe.seed
    assert docs(_with_stage_seed(tiny_ctx, "decay-short", tiny_ctx.recipe.seed)) == base
    other = _with_stage_seed(tiny_ctx, "decay-short", seed)
    assert stage_seed(other.recipe, "decay-short") == seed
    drawn = docs(other)
    assert drawn != base
    assert len({tuple(ids) for _, ids in drawn} - {tuple(ids) for _, ids in base}) > len(drawn) // 4
    assert docs(_with_stage_seed(tiny_ctx, "decay-long", 7)) == base   # another stage's seed changes nothing here
    # octo data preview says which seed drew its sample
    assert f"with seed {seed};" in render(other, "decay-short", draw(other, "decay-short", 1024), where="here",
                                          samples=1, max_chars=100)


def test_a_random_init_stage_is_initialised_from_its_own_seed(tiny_ctx):
    from octo.cpt.state import init_model

    def weights(seed):
        model = init_model(_with_stage_seed(tiny_ctx, "stable", seed, init="random"), "stable")[0]
        return model.get_input_embeddings().weight

    default, own, again = weights(None), weights(tiny_ctx.recipe.seed + 1), weights(tiny_ctx.recipe.seed + 1)
    assert default.equal(weights(tiny_ctx.recipe.seed)) and own.equal(again) and not own.equal(default)
