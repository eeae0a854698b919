"""A run: its recipe, its directory, and what every stage shares (tokenizer, sources, problems).

``RunContext.prepare()`` makes the run directory ready: it writes ``recipe.resolved.yaml``
(refusing to reuse a directory made by a different recipe), generates the toy world,
trains or copies the tokenizer, and writes ``manifest.json`` (versions, git commit, seeds,
tokenizer hash, data fingerprints). Each step is skipped when its output already exists,
so a rerun of the same command resumes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cached_property
from pathlib import Path

import yaml

from octo import progress
from octo.config import Recipe, dump_recipe
from octo.errors import OctoError
from octo.runio import MANIFEST_FILE, RECIPE_FILE, read_json, write_json_atomic, write_text_atomic


def _flatten(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = d
    return out


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
        if spec.startswith("toy:"):
            return self.world_dir / f"{spec[4:]}.jsonl"
        return Path(spec).expanduser()

    # --- preparation --------------------------------------------------------------------
    def prepare(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._check_or_write_recipe()
        if self.recipe.world is not None and not (self.world_dir / "world.json").exists():
            from octo.toyworld import generate_world

            progress.info(f"generating the toy world in {self.world_dir}")
            generate_world(self.recipe.world, self.world_dir)
        if not (self.tokenizer_dir / "tokenizer_config.json").exists():
            self._make_tokenizer()
        if not (self.run_dir / MANIFEST_FILE).exists():
            self._write_manifest()

    def _check_or_write_recipe(self) -> None:
        text = dump_recipe(self.recipe)
        path = self.run_dir / RECIPE_FILE
        if path.exists():
            old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            new = yaml.safe_load(text)
            a, b = _flatten(old), _flatten(new)
            # Keys on one side only are new or retired config fields (a code version change) and are
            # tolerated, except inside user-named maps (stages, sources, mixtures), where they are edits.
            user_maps = ("cpt.stages.", "data.sources.", "probe.max_len.stairs.")
            diff = sorted(k for k in set(a) | set(b)
                          if (k in a and k in b and a[k] != b[k])
                          or ((k in a) != (k in b) and k.startswith(user_maps)))
            if diff:
                shown = ", ".join(diff[:5]) + (" ..." if len(diff) > 5 else "")
                raise OctoError(f"run directory {self.run_dir} was made by a different recipe (differs in: "
                                f"{shown}); pass another --run-dir or delete that directory")
            return
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

    def _write_manifest(self) -> None:
        from octo.cpt.checkpoint import package_versions
        from octo.data.sources import fingerprint, resolve_path
        from octo.model import tokenizer_hash

        fps = {}
        for name, src in self.recipe.data.sources.items():
            path = resolve_path(src.path, self.run_dir)
            if not path.exists():
                raise OctoError(f"source '{name}': file {path} does not exist; fix data.sources.{name}.path")
            fps[name] = fingerprint(path, src)
        write_json_atomic(self.run_dir / MANIFEST_FILE, {
            "name": self.recipe.name, "seed": self.recipe.seed, "git_commit": git_commit(),
            "versions": package_versions(), "tokenizer_hash": tokenizer_hash(self.tokenizer_dir),
            "data_fingerprints": fps,
        })

    # --- shared objects -----------------------------------------------------------------
    @cached_property
    def manifest(self) -> dict:
        return read_json(self.run_dir / MANIFEST_FILE)

    @cached_property
    def tokenizer(self):
        from octo.model import load_tokenizer

        return load_tokenizer(self.tokenizer_dir)

    def source(self, name: str):
        """A loaded, tokenized, split source (cached for the life of the process)."""
        if name not in self._sources:
            from octo.data.sources import LoadedSource

            self._sources[name] = LoadedSource(name, self.recipe.data.sources[name], self.run_dir,
                                               self.tokenizer, self.recipe.seed)
        return self._sources[name]

    def problems(self, spec: str) -> list[dict]:
        path = self.problems_path(spec)
        if not path.exists():
            raise OctoError(f"problem file {path} does not exist; fix data.prompts / data.heldout in the recipe")
        rows = []
        with open(path, encoding="utf-8") as fh:
            for i, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise OctoError(f"{path} line {i} is not valid JSON") from None
                if "question" not in row or "answer" not in row:
                    raise OctoError(f"{path} line {i} needs 'question' and 'answer' fields")
                rows.append({"question": str(row["question"]), "answer": str(row["answer"]),
                             "level": int(row.get("level", 0))})
        if not rows:
            raise OctoError(f"problem file {path} holds no problems")
        return rows

    def stage_done(self, stage: str) -> dict | None:
        path = self.stage_dir(stage) / "DONE.json"
        return read_json(path) if path.exists() else None

    def reset_stage(self, stage: str) -> None:
        shutil.rmtree(self.stage_dir(stage), ignore_errors=True)
