"""A run: its recipe, its directory, and what every stage shares (tokenizer, sources, problems).

``RunContext.prepare()`` makes the run directory ready: it takes the directory's write lock
(``.lock``, one writer per run directory, :mod:`octo.runlock`), writes ``recipe.resolved.yaml``
(refusing to reuse a directory made by a different recipe), reads and checks every row of the
file data sources (bad rows stop the run here, before anything trains, unless a source says
``on_bad_rows: skip``; a streamed source is checked in its first rows only, octo.data.stream),
generates the toy world, trains or copies the tokenizer, and writes ``manifest.json`` (versions,
git commit, seeds, tokenizer hash, data fingerprints, skipped bad rows). Each step is skipped when its output already exists, so a rerun of the same command resumes.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from functools import cached_property
from pathlib import Path

import yaml

from octo import progress
from octo.config import Recipe, dump_recipe
from octo.errors import OctoError
from octo.runio import (
    MANIFEST_FILE,
    RECIPE_FILE,
    read_json,
    write_json_atomic,
    write_text_atomic,
)
from octo.runlock import RunLock


def _flatten(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = d
    return out


_FIELD_DEFAULTS: list[tuple[re.Pattern, object]] | None = None


def _field_default(key: str) -> tuple[bool, object]:
    """(True, default) when ``key`` is a config field inside a user-named map (``data.sources.*.x``)."""
    global _FIELD_DEFAULTS
    if _FIELD_DEFAULTS is None:
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
    """A key on one side only that is a config field at its default (a field added to, e.g.,
    SourceConfig after the run began) inside an entry present on both sides is not an edit."""
    known, default = _field_default(key)
    if not known:
        return False
    value = a[key] if key in a else b[key]
    entry = key.rsplit(".", 1)[0] + "."
    return value == default and any(k.startswith(entry) for k in a) and any(k.startswith(entry) for k in b)


_ENTRY_MAPS = (("cpt", "stages"), ("data", "sources"))

# Lists whose every item is a run of its own directory: a seed (``<checkpoint>.seed-N``; the first seed's has no
# suffix), or a checkpoint octo validate probes (its probes and full runs). Growing or shrinking one at its end adds
# or leaves out runs and changes none, so it is no other recipe.
RUN_LISTS = ("probe.seeds", "validation.seeds", "validation.full_seeds", "validation.checkpoints")


# How long one GRPO run is and when it evaluates and saves: every run records them in its probe.json and a started
# run is checked against them on its own (octo.probe.grpo.check_run_settings), so they may change in a run directory:
# the runs they change are refused by name, the others (the CPT stages, `octo validate`'s full runs, which set these
# keys themselves) are reused. How a run trains (lr, batch, prompt, ...) stays the directory's.
PER_RUN_KEYS = ("probe.steps", "probe.eval_every", "probe.save_every", "probe.max_len")


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


def _add_entries(old: dict, new: dict) -> dict:
    """``old`` with the stages and sources only ``new`` defines added (the run's record grows by a branch)."""
    import copy

    merged = copy.deepcopy(old)
    for section, key in _ENTRY_MAPS:
        extra = {k: v for k, v in _entries(new, section, key).items() if k not in _entries(old, section, key)}
        if extra:
            merged.setdefault(section, {}).setdefault(key, {}).update(copy.deepcopy(extra))
    return merged


def git_commit() -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return res.stdout.strip() or None if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


class RunContext:
    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.run_dir = recipe.run_path
        self._sources: dict = {}
        self._read: dict = {}          # hf: sources read by _check_sources, handed to source() once
        self._fingerprints: dict[str, str] = {}
        self.lock: RunLock | None = None
        # version-binding exceptions the user allowed (--allow-mismatch; octo.cpt.binding)
        self.allow_mismatch: set[str] = set()
        self.data_bad_rows: dict[str, dict[str, int]] = {}

    # --- paths --------------------------------------------------------------------------
    @property
    def world_dir(self) -> Path:
        return self.run_dir / "world"

    @property
    def tokenizer_dir(self) -> Path:
        return self.run_dir / "tokenizer"

    def stage_dir(self, stage: str) -> Path:
        return self.run_dir / "cpt" / stage

    def problems_path(self, spec: str) -> Path:
        """The file of a toy-world problem set ``toy:<name>``."""
        return self.world_dir / f"{spec[4:]}.jsonl"

    # --- preparation --------------------------------------------------------------------
    def prepare(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.lock is None or not self.lock.held:  # before the first write; re-entrant within this process
            self.lock = RunLock.acquire_dir(self.run_dir)
        self._check_or_write_recipe()
        self.data_bad_rows = self._check_sources()
        if self.recipe.world is not None and not (self.world_dir / "world.json").exists():
            from octo.toyworld import generate_world

            progress.info(f"generating the toy world in {self.world_dir}")
            generate_world(self.recipe.world, self.world_dir)
        if not (self.tokenizer_dir / "tokenizer_config.json").exists():
            self._make_tokenizer()
        if not (self.run_dir / MANIFEST_FILE).exists():
            self._write_manifest()
        elif self.manifest.get("data_bad_rows", {}) != self.data_bad_rows:
            # the skipped rows of this run are those of the files as read now (a resumed run rereads them)
            self._update_manifest(data_bad_rows=self.data_bad_rows)
        fps = self.manifest.get("data_fingerprints", {})
        added = {n: s for n, s in self.recipe.data.sources.items() if n not in fps}
        if added:  # sources of a branch recipe added to the run (see _check_or_write_recipe)
            self._update_manifest(data_fingerprints={**fps, **self._fingerprints_of(added)})

    def _update_manifest(self, **fields) -> None:
        """Rewrite manifest.json with ``fields`` changed (atomically) and forget the cached copy."""
        write_json_atomic(self.run_dir / MANIFEST_FILE, {**self.manifest, **fields})
        self.__dict__.pop("manifest", None)

    def release(self) -> None:
        """Give up this context's hold on the run directory's write lock.

        A process holds the lock until it exits; library callers that prepare a directory and then
        hand it to another octo process (tests, notebooks) release it first.
        """
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _check_sources(self) -> dict[str, dict[str, int]]:
        """Read every row of every file source now (of a streamed source, its first rows), so bad data
        stops the run before anything trains.

        Toy sources are generated by octo and always clean. Returns the skipped rows per source and
        reason (sources with ``on_bad_rows: skip``) and says so once per source.
        """
        from octo.data.sources import is_hf, read_source

        out: dict[str, dict[str, int]] = {}
        for name, src in self.recipe.data.sources.items():
            if src.path.startswith("toy:"):
                continue
            read = read_source(name, src, self.run_dir)
            bad = read.bad
            self._fingerprints[name] = read.fingerprint
            if is_hf(src.path) or src.streaming:  # a dataset, or a stream's checked first rows, is read once
                self._read[name] = read                 # per process; files read whole are cheap to reread
            if bad.total:
                progress.info(bad.summary())
                out[name] = dict(sorted(bad.counts.items()))
        return out

    def _check_or_write_recipe(self, *, write: bool = True) -> None:
        """Refuse a run directory made by a different recipe; write (``write``) recipe.resolved.yaml."""
        text = dump_recipe(self.recipe)
        path = self.run_dir / RECIPE_FILE
        if path.exists():
            old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            new = yaml.safe_load(text)
            a, b = _flatten(old), _flatten(new)
            # A stage or source on one side only is a branch of the same run (recipes/octothinker/decay-*.yaml
            # add their decay stage and its sources to stable.yaml's): its keys are not compared, and one the
            # new recipe adds is added to recipe.resolved.yaml below. What both sides define must agree.
            # validation.reduced only lists the overrides of another run (`octo validate --reduced`): not this one's
            whole = _one_sided_entries(old, new) + ("validation.reduced",)
            # (the probe's length and cadence are checked per run: PER_RUN_KEYS)
            # Keys on one side only are new or retired config fields (a code version change) and are
            # tolerated, except inside user-named maps (stages, sources, mixtures), where they are edits.
            user_maps = ("cpt.stages.", "data.sources.", "probe.max_len.stairs.")
            diff = sorted(k for k in set(a) | set(b)
                          if not k.startswith(whole) and not _per_run(k)
                          and ((k in a and k in b and a[k] != b[k] and not _run_list_extended(k, a, b))
                               or ((k in a) != (k in b) and k.startswith(user_maps) and not _new_default(k, a, b))))
            if diff:
                shown = ", ".join(diff[:5]) + (" ..." if len(diff) > 5 else "")
                raise OctoError(f"run directory {self.run_dir} was made by a different recipe (differs in: "
                                f"{shown}); pass another --run-dir or delete that directory")
            merged = _add_entries(old, new)
            for key in RUN_LISTS:  # the record says which seeds (checkpoints) the latest command ran
                section, name = key.split(".")
                if key in a and key in b and a[key] != b[key]:
                    merged[section][name] = list(b[key])
            for key in PER_RUN_KEYS:  # and with which probe length and cadence
                section, name = key.split(".")
                if name in (new.get(section) or {}):
                    merged.setdefault(section, {})[name] = new[section][name]
            if write and merged != old:
                write_text_atomic(path, yaml.safe_dump(merged, sort_keys=False, allow_unicode=True, width=100))
            return
        if write:
            write_text_atomic(path, text)

    def _make_tokenizer(self) -> None:
        from octo.model import load_tokenizer, train_toy_tokenizer

        spec = self.recipe.data.tokenizer
        if spec == "toy":
            progress.info("training the toy tokenizer")
            train_toy_tokenizer(self._tokenizer_corpus(), self.recipe.world.vocab_size, self.tokenizer_dir)
        else:
            tok = load_tokenizer(spec)
            tok.save_pretrained(str(self.tokenizer_dir))

    def _tokenizer_corpus(self):
        from octo.data.sources import read_rows
        from octo.data.templates import field_map, render

        for name, src in self.recipe.data.sources.items():
            if not src.path.startswith("toy:"):
                continue
            from octo.data.sources import resolve_path

            path = resolve_path(src.path, self.run_dir)
            columns = field_map(src.template, src.fields)
            # a few hundred documents per source fix a 512-token vocabulary; more only costs time
            for row in read_rows(path, src.template, columns, name)[:400]:
                prompt, response = render(src.template, row, columns)
                yield prompt + response
        for spec in (self.recipe.data.prompts, self.recipe.data.heldout):
            if spec.startswith("toy:"):
                for row in self.problems(spec):
                    yield row["question"]

    def _fingerprints_of(self, sources: dict) -> dict[str, str]:
        from octo.data.sources import fingerprint, resolve_path

        fps = {}
        for name, src in sources.items():
            if name in self._fingerprints:  # read by _check_sources
                fps[name] = self._fingerprints[name]
                continue
            path = resolve_path(src.path, self.run_dir)
            if not path.exists():
                raise OctoError(f"source '{name}': file {path} does not exist; fix data.sources.{name}.path")
            fps[name] = fingerprint(path, src)
        return fps

    def _write_manifest(self) -> None:
        from octo.cpt.checkpoint import package_versions

        fps = self._fingerprints_of(self.recipe.data.sources)
        write_json_atomic(self.run_dir / MANIFEST_FILE, {
            "name": self.recipe.name, "seed": self.recipe.seed, "git_commit": git_commit(),
            "versions": package_versions(), "tokenizer_hash": self.tokenizer_version,
            "data_fingerprints": fps, "data_bad_rows": self.data_bad_rows,
        })

    # --- shared objects -----------------------------------------------------------------
    @cached_property
    def manifest(self) -> dict:
        return read_json(self.run_dir / MANIFEST_FILE)

    @cached_property
    def tokenizer_version(self) -> str:
        """Hash of the run's tokenizer as it is on disk now (seed 003 tau_tok), read once per process."""
        from octo.model import tokenizer_hash

        return tokenizer_hash(self.tokenizer_dir)

    @cached_property
    def tokenizer(self):
        from octo.model import load_tokenizer

        return load_tokenizer(self.tokenizer_dir)

    def source(self, name: str):
        """A loaded, tokenized, split source, or a streamed one (octo.data.stream.StreamSource: its held-out
        documents, its training documents read lazily), cached for the life of the process."""
        if name not in self._sources:
            from octo.data.sources import LoadedSource
            from octo.data.stream import StreamSource

            cpt = self.recipe.cpt
            cfg = self.recipe.data.sources[name]
            # a streamed source is read while training: its long documents are counted by its stream then
            kind = StreamSource if cfg.streaming else LoadedSource
            src = kind(name, cfg, self.run_dir, self.tokenizer, self.recipe.seed, read=self._read.pop(name, None),
                       max_len=cpt.seq_len if cpt.long_docs == "drop" else None)
            self._sources[name] = src
            if cpt.long_docs == "drop" and not cfg.streaming:
                self._record_long_docs(name, src.dropped_long)
        return self._sources[name]

    def _record_long_docs(self, name: str, dropped: int) -> None:
        """Say once per source how many documents ``cpt.long_docs: drop`` left out, and keep the count in
        manifest.json (``data_long_docs_dropped``) when this process writes the run directory."""
        progress.info(f"source '{name}': dropped {dropped} training documents longer than "
                      f"seq_len={self.recipe.cpt.seq_len} tokens (cpt.long_docs: drop)")
        if self.lock is None or not self.lock.held or not (self.run_dir / MANIFEST_FILE).exists():
            return  # a reader (octo data preview) never writes
        counts = dict(self.manifest.get("data_long_docs_dropped", {}))
        if counts.get(name) != dropped:
            counts[name] = dropped
            self._update_manifest(data_long_docs_dropped=dict(sorted(counts.items())))

    def problems(self, spec: str) -> list[dict]:
        """Problems of a spec: the toy world's ``toy:<name>`` file, or anything octo.data.problems resolves."""
        from octo.data.problems import load_problems

        if spec.startswith("toy:"):  # octo's own file: the recipe's field names are for the user's sets
            return load_problems(str(self.problems_path(spec)))
        return load_problems(spec, fields=self.recipe.data.problem_fields)

    def stage_done(self, stage: str) -> dict | None:
        path = self.stage_dir(stage) / "DONE.json"
        return read_json(path) if path.exists() else None

    def reset_stage(self, stage: str) -> None:
        shutil.rmtree(self.stage_dir(stage), ignore_errors=True)
