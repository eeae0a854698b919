"""A run: its recipe, its directory, and what every stage shares (tokenizer, sources, problems).

``RunContext.prepare()`` makes the run directory ready, each part in the module that does it:

1. the directory's write lock (``.lock``, one writer per run directory: octo.runlock);
2. the reuse rule: refuse a directory made by a different recipe, write ``recipe.resolved.yaml``
   (octo.reuse);
3. the data checks: every row of the file sources is read now, so bad rows stop the run before anything
   trains (octo.data.checks);
4. the toy world (octo.toyworld) and the run's tokenizer (trained on the toy world, or copied);
5. ``manifest.json`` (octo.manifest).

Each step is skipped when its output already exists, so a rerun of the same command resumes.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from octo import progress
from octo.config import Recipe
from octo.manifest import update_manifest, write_manifest
from octo.reuse import check_run_dir
from octo.runio import MANIFEST_FILE, read_json
from octo.runlock import RunLock


class RunContext:
    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.run_dir = recipe.run_path
        self._sources: dict = {}
        self._read: dict = {}          # datasets and streams read by the data checks, handed to source() once
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
        from octo.data.checks import check_sources

        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.lock is None or not self.lock.held:  # before the first write; re-entrant within this process
            self.lock = RunLock.acquire_dir(self.run_dir)
        check_run_dir(self.recipe)
        checked = check_sources(self.recipe.data.sources, self.run_dir)
        self.data_bad_rows, self._fingerprints, self._read = checked.bad_rows, checked.fingerprints, checked.reads
        if self.recipe.world is not None and not (self.world_dir / "world.json").exists():
            from octo.toyworld import generate_world

            progress.info(f"generating the toy world in {self.world_dir}")
            generate_world(self.recipe.world, self.world_dir)
        if not (self.tokenizer_dir / "tokenizer_config.json").exists():
            self._make_tokenizer()
        if not (self.run_dir / MANIFEST_FILE).exists():
            write_manifest(self.run_dir, name=self.recipe.name, seed=self.recipe.seed,
                           tokenizer_hash=self.tokenizer_version,
                           fingerprints=self._fingerprints_of(self.recipe.data.sources), bad_rows=self.data_bad_rows)
        elif self.manifest.get("data_bad_rows", {}) != self.data_bad_rows:
            # the skipped rows of this run are those of the files as read now (a resumed run rereads them)
            self._update_manifest(data_bad_rows=self.data_bad_rows)
        fps = self.manifest.get("data_fingerprints", {})
        added = {n: s for n, s in self.recipe.data.sources.items() if n not in fps}
        if added:  # sources of a branch recipe added to the run (octo.reuse)
            self._update_manifest(data_fingerprints={**fps, **self._fingerprints_of(added)})

    def _update_manifest(self, **fields) -> None:
        update_manifest(self.run_dir, **fields)
        self.__dict__.pop("manifest", None)

    def release(self) -> None:
        """Give up this context's hold on the run directory's write lock.

        A process holds the lock until it exits; library callers that prepare a directory and then
        hand it to another octo process (tests, notebooks) release it first.
        """
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _make_tokenizer(self) -> None:
        from octo.model import load_tokenizer, train_toy_tokenizer

        spec = self.recipe.data.tokenizer
        if spec == "toy":
            from octo.data.checks import toy_corpus

            progress.info("training the toy tokenizer")
            train_toy_tokenizer(toy_corpus(self.recipe, self.run_dir, self.problems), self.recipe.world.vocab_size,
                                self.tokenizer_dir)
        else:
            from octo.assets import resolve

            load_tokenizer(resolve(spec)).save_pretrained(str(self.tokenizer_dir))

    def _fingerprints_of(self, sources: dict) -> dict[str, str]:
        from octo.data.checks import fingerprints

        return fingerprints(sources, self.run_dir, self._fingerprints)

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
            if not cfg.streaming:  # a streamed source counts what it leaves out as it reads
                n = src.dropped_heldout
                self._record_count("data_heldout_copies_dropped", name, n,
                                   f"source '{name}': left out {n} training document{'s' if n != 1 else ''} "
                                   "identical to a held-out one (held-out documents are never trained on)")
                if cpt.long_docs == "drop":
                    n = src.dropped_long
                    self._record_count("data_long_docs_dropped", name, n,
                                       f"source '{name}': dropped {n} training document{'s' if n != 1 else ''} "
                                       f"longer than seq_len={cpt.seq_len} tokens (cpt.long_docs: drop)")
        return self._sources[name]

    def _record_count(self, key: str, name: str, count: int, message: str) -> None:
        """Keep a source's count of left-out documents in manifest.json ``key`` and say it once per run
        directory: when it changes (a source that leaves out nothing is absent). A reader (octo data preview)
        writes nothing and says it each time."""
        writer = self.lock is not None and self.lock.held and (self.run_dir / MANIFEST_FILE).exists()
        counts = dict(self.manifest.get(key, {})) if writer else {}
        if counts.get(name, 0) == count:
            return
        if count:
            progress.info(message)
        if writer:
            counts[name] = count
            self._update_manifest(**{key: {k: v for k, v in sorted(counts.items()) if v}})

    def problems(self, spec: str) -> list[dict]:
        """Problems of a spec: the toy world's ``toy:<name>`` file, or anything octo.data.problems resolves."""
        from octo.data.problems import load_problems

        if spec.startswith("toy:"):  # octo's own file: the recipe's field names are for the user's sets
            return load_problems(str(self.problems_path(spec)))
        return load_problems(spec, fields=self.recipe.data.problem_fields)

    def stage_done(self, stage: str) -> dict | None:
        path = self.stage_dir(stage) / "DONE.json"
        return read_json(path) if path.exists() else None


def random_init_checkpoint(recipe: Recipe, out: Path, *, seed: int = 0) -> Path:
    """The recipe's world and tokenizer prepared in its run directory, and a freshly initialised toy model saved with
    that tokenizer as a checkpoint directory ``out`` (returned). The run directory's write lock is released after,
    so that the ``octo probe`` processes a test or benchmark starts next may write it."""
    from octo.model import build_toy_model

    ctx = RunContext(recipe)
    ctx.prepare()
    try:
        build_toy_model(recipe.model, ctx.tokenizer, seed=seed).save_pretrained(str(out))
        ctx.tokenizer.save_pretrained(str(out))
    finally:
        ctx.release()
    return Path(out)
