"""When a run directory, a stage or a probe may be reused: the one rule.

Every result is made with settings, and reusing a result (skipping what is done, resuming what has a
checkpoint) is allowed only with the same settings; a refusal names the keys that differ. The settings
are recorded beside the results, in full (not as a hash), so that a refusal can name them:

- **the run directory** (:func:`check_run_dir`): ``recipe.resolved.yaml`` records what every stage and
  probe of the directory shares (model, data, how stages and probes train). It is compared with the
  command's resolved recipe before anything runs, except for:
  - ``RUN_LISTS``: lists whose items are runs of their own (a seed's probes, a checkpoint ``octo validate``
    probes); growing or shrinking one at its end adds or leaves out runs and changes none;
  - ``PER_RUN_KEYS``: a probe's length and cadence, and when full runs are evaluated, checked per probe and
    full run (below), so that a shorter probe can run beside the stages and full runs of the same directory;
  - a stage or source that only one side defines: a branch recipe adds its decay stage and sources to the
    record (recipes/octothinker/decay-*.yaml);
  - ``validation.reduced``: the overrides of another run directory (``octo validate --reduced``), and
    ``probe.jobs``: how many probes run at once;
  - ``analysis.*``: how the runs are read (the record keeps the latest command's analysis section);
  - config fields added or retired by a newer octo, unless inside a user-named map (stages, sources,
    stairs), where a key on one side only is an edit (unless it is a new field at its default).
- **a probe** (:func:`check_probe_dir`): ``probe.json`` records its settings; a finished probe, or one with a
  complete checkpoint to resume, must be run with the same ones (where the checkpoint lies and the rollout
  backend are not settings). A probe that never reached a checkpoint starts over with the new settings.
- **a stage** is covered by the run directory's record: every key a stage depends on is compared there.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path

import yaml

from octo.errors import OctoError
from octo.schema import read_recipe_file
from octo.runio import PROBE_META_FILE, RECIPE_FILE, STAGE_DONE_FILE, read_json, write_text_atomic

RUN_LISTS = ("probe.seeds", "validation.seeds", "validation.full_seeds", "validation.checkpoints")
PER_RUN_KEYS = ("probe.steps", "probe.eval_every", "probe.eval_steps", "probe.save_every", "probe.max_len",
                "probe.start_max_len", "validation.full_eval_every", "validation.full_eval_steps")
# how often a run saves by the clock, how many probes run at once and how many completions share a pass change no
# result: a rerun may change them
NOT_SETTINGS = ("cpt.save_every_s", "probe.save_every_s", "probe.jobs", "probe.micro_batch_size")
_OTHER_RUN_DIR = ("validation.reduced",)
# how the runs are read, not what they ran: `octo score --set analysis.<key>=...` re-reads any run directory, and a
# newer octo's analysis defaults (e.g. the shipped readiness combination) must not lock an older run directory out.
# The record keeps the latest command's analysis section, which `octo score` and `octo report` then read.
_READ_ONLY = ("analysis.",)
_ENTRY_MAPS = (("cpt", "stages"), ("data", "sources"))
_USER_MAPS = ("cpt.stages.", "data.sources.", "probe.max_len.stairs.")
# probe.json keys that are not settings: where the checkpoint lies (a moved run directory), the rollout backend
# (HF generate and vLLM sample the same policy; a killed run may resume on the other), what the run measured
_NOT_PROBE_SETTINGS = ("probe_id", "checkpoint_id", "checkpoint", "backend", "rollout_tokens", "heldout_hash")


def check_run_dir(recipe, *, write: bool = True) -> None:
    """Refuse a run directory whose record was made by a different recipe; write (``write``) the record:
    recipe.resolved.yaml, grown by the stages and sources a branch recipe adds, with the latest run lists and
    probe length and cadence."""
    from octo.config import dump_recipe

    text = dump_recipe(recipe)
    path = Path(recipe.run_path) / RECIPE_FILE
    if not path.exists():
        if write:
            write_text_atomic(path, text)
        return
    old = read_recipe_file(path, advice="delete that run directory or pass another --run-dir")
    new = yaml.safe_load(text)
    diff = recipe_diff(old, new)
    if diff:
        shown = ", ".join(diff[:5]) + (" ..." if len(diff) > 5 else "")
        raise OctoError(f"run directory {recipe.run_path} was made by a different recipe (differs in: {shown}); "
                        "pass another --run-dir or delete that directory")
    merged = _record(old, new)
    if write and merged != old:
        write_text_atomic(path, yaml.safe_dump(merged, sort_keys=False, allow_unicode=True, width=100))


def recipe_diff(old: dict, new: dict) -> list[str]:
    """The flattened keys of two resolved recipes that make them different recipes for one run directory."""
    a, b = _flatten(old), _flatten(new)
    whole = _one_sided_entries(old, new) + _OTHER_RUN_DIR + _READ_ONLY
    return sorted(k for k in set(a) | set(b)
                  if not k.startswith(whole) and not _per_run(k) and k not in NOT_SETTINGS
                  and ((k in a and k in b and a[k] != b[k] and not _run_list_extended(k, a, b))
                       or ((k in a) != (k in b) and k.startswith(_USER_MAPS) and not _new_default(k, a, b))))


def check_probe_dir(probe_dir: Path, meta: dict) -> None:
    """Refuse to skip or resume a probe that was started with other settings than ``meta``'s (its probe.json)."""
    from octo.probe.checkpoints import has_complete_checkpoint

    probe_dir = Path(probe_dir)
    path = probe_dir / PROBE_META_FILE
    started = (probe_dir / STAGE_DONE_FILE).exists() or has_complete_checkpoint(probe_dir / "checkpoints")
    if not path.exists() or not started:
        return
    old = read_json(path)
    new = json.loads(json.dumps(meta))   # as it reads back (the stairs' keys become strings)
    diff = [k for k in new if k not in _NOT_PROBE_SETTINGS and k in old and old[k] != new[k]]
    if diff:
        shown = ", ".join(f"{k} {_short(old[k])} there, {_short(new[k])} here" for k in diff[:4])
        raise OctoError(f"{probe_dir} was run with other settings ({shown}); delete that directory to run it again "
                        "with these, or pass another --run-dir")


def _short(value) -> str:
    if isinstance(value, dict) and value.get("kind") == "stair":
        return "stair " + "/".join(f"{k}:{v}" for k, v in value["stairs"].items())
    if isinstance(value, dict):   # the other length schedules: their kind and first limit
        return f"{value.get('kind')} {value.get('max_len')}"
    return str(value)


def _record(old: dict, new: dict) -> dict:
    """The record after this command: ``old`` with the stages and sources only ``new`` defines added, and the run
    lists and probe length and cadence the command ran with."""
    merged = copy.deepcopy(old)
    for section, key in _ENTRY_MAPS:
        extra = {k: v for k, v in _entries(new, section, key).items() if k not in _entries(old, section, key)}
        if extra:
            merged.setdefault(section, {}).setdefault(key, {}).update(copy.deepcopy(extra))
    if "analysis" in new:
        merged["analysis"] = copy.deepcopy(new["analysis"])
    a, b = _flatten(old), _flatten(new)
    for key in RUN_LISTS:
        section, name = key.split(".")
        if key in a and key in b and a[key] != b[key]:
            merged[section][name] = list(b[key])
    for key in PER_RUN_KEYS:
        section, name = key.split(".")
        if name in (new.get(section) or {}):
            merged.setdefault(section, {})[name] = new[section][name]
    return merged


def _flatten(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = d
    return out


def _per_run(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in PER_RUN_KEYS)


def _run_list_extended(key: str, a: dict, b: dict) -> bool:
    """``key`` is a list of RUN_LISTS that one side extends at its end (the same first items, in order)."""
    old, new = a.get(key), b.get(key)
    if key not in RUN_LISTS or not isinstance(old, list) or not isinstance(new, list) or not old or not new:
        return False
    n = min(len(old), len(new))
    return old[:n] == new[:n]


def _entries(d: dict, section: str, key: str) -> dict:
    value = (d.get(section) or {}).get(key) if isinstance(d.get(section), dict) else None
    return value if isinstance(value, dict) else {}


def _one_sided_entries(old: dict, new: dict) -> tuple[str, ...]:
    """Flattened-key prefixes of the stages and sources defined by only one of two resolved recipes."""
    out = []
    for section, key in _ENTRY_MAPS:
        a, b = _entries(old, section, key), _entries(new, section, key)
        out += [f"{section}.{key}.{name}." for name in set(a) ^ set(b)]
    return tuple(out)


_FIELD_DEFAULTS: list[tuple[re.Pattern, object]] | None = None


def _field_default(key: str) -> tuple[bool, object]:
    """(True, default) when ``key`` is a config field inside a user-named map (``data.sources.*.x``)."""
    global _FIELD_DEFAULTS
    if _FIELD_DEFAULTS is None:
        from octo.config import Recipe
        from octo.schema import iter_fields

        _FIELD_DEFAULTS = []
        for path, f, tp in iter_fields(Recipe):
            if "*" not in path or dataclasses.is_dataclass(tp):
                continue
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                continue
            pattern = re.compile(r"\.".join("[^.]+" if p == "*" else re.escape(p) for p in path.split(".")) + "$")
            _FIELD_DEFAULTS.append((pattern, default))
    for pattern, default in _FIELD_DEFAULTS:
        if pattern.match(key):
            return True, default
    return False, None


def _new_default(key: str, a: dict, b: dict) -> bool:
    """A key on one side only that is a config field at its default (a field added to, e.g., SourceConfig after
    the run began) inside an entry present on both sides is not an edit."""
    known, default = _field_default(key)
    if not known:
        return False
    value = a[key] if key in a else b[key]
    entry = key.rsplit(".", 1)[0] + "."
    return value == default and any(k.startswith(entry) for k in a) and any(k.startswith(entry) for k in b)
