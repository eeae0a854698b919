"""Disk full or not writable: a failed checkpoint or metrics write stops the command with one clear line
(what failed, which path, how to go on) and exit code 2, leaves the previous checkpoint intact, never
makes a half-written checkpoint the latest good one, and the same command, rerun once the fault is
gone, resumes and ends with the metrics of an uninterrupted run.

Faults are injected (tests may run as root, where a read-only chmod does not stop writes): the Nth write
of a file raises OSError(ENOSPC) after writing part of its bytes, or a library raises what it raises
for a full disk (torch.save: RuntimeError from the OSError of its file; safetensors: SafetensorError
quoting "os error 28"). Commands run in-process through ``octo.cli.main``.
"""

from __future__ import annotations

import errno
import fnmatch
import os
from pathlib import Path

import pytest

from octo.errors import OctoError
from tests.conftest import QUICKSTART, TINY_OVERRIDES

OVERRIDES = TINY_OVERRIDES + [
    "cpt.threads=1", "cpt.stages.pretrain.save_every=1",
    "probe.steps=4", "probe.save_every=2", "probe.eval_every=2", "probe.eval_problems=4",
    "probe.max_len.stairs={0: 8, 2: 12}",
]
TIMING_KEYS = {"time/step", "tokens_per_s", "time/rollout", "time/verify", "time/sync", "time/train"}
ADVICE = "free space and rerun the same command to resume"


# --- fault injection -----------------------------------------------------------------------------

class FailingWrites:
    """Wraps octo.runio._write_all: from the ``nth`` write of a file matching ``pattern`` on, write half
    the bytes, then fail with ``code`` (a disk that filled up during the write)."""

    def __init__(self, real, pattern: str, nth: int, code: int = errno.ENOSPC):
        self.real, self.pattern, self.nth, self.code = real, pattern, nth, code
        self.count = 0

    def __call__(self, fd: int, data: bytes) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if fnmatch.fnmatch(path, self.pattern):
            self.count += 1
            if self.count >= self.nth:
                self.real(fd, data[: len(data) // 2])
                raise OSError(self.code, os.strerror(self.code))
        self.real(fd, data)


def fail_writes(monkeypatch, pattern: str, nth: int, code: int = errno.ENOSPC) -> FailingWrites:
    import octo.runio

    fault = FailingWrites(octo.runio._write_all, pattern, nth, code)
    monkeypatch.setattr(octo.runio, "_write_all", fault)
    return fault


class _FullFile:
    """A file that takes a few bytes, then fails like a full disk."""

    def __init__(self, fh, room: int = 64):
        self.fh, self.room = fh, room

    def write(self, data) -> int:
        if len(data) > self.room:
            self.fh.write(bytes(data[: self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()


def fail_checkpoint(monkeypatch, where: str, step: int) -> None:
    """Make the write of checkpoint step-<step> fail in one of its files, the way it fails for real."""
    import octo.cpt.checkpoint

    if where == "manifest":
        fail_writes(monkeypatch, f"*/.tmp-step-{step}-*/.manifest.json.*", 1)
    elif where == "trainer-state":
        # the real torch.save into a file object that runs out of room: RuntimeError("unexpected pos")
        def fake_open(path, mode="r", *a, **kw):
            fh = open(path, mode, *a, **kw)  # noqa: SIM115 - handed to the caller's with-block
            return _FullFile(fh) if f".tmp-step-{step}-" in str(path) and "w" in mode else fh

        monkeypatch.setattr(octo.cpt.checkpoint, "open", fake_open, raising=False)
    elif where == "weights":
        _fail_safetensors(monkeypatch, f".tmp-step-{step}-")
    else:
        raise ValueError(where)


def _fail_safetensors(monkeypatch, marker: str) -> None:
    import transformers.modeling_utils as mu
    from safetensors import SafetensorError

    real = mu.safe_save_file

    def fake(tensors, filename, *a, **kw):
        if marker in str(filename):
            Path(filename).write_bytes(b"\0" * 100)  # what a full disk leaves
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, filename, *a, **kw)

    monkeypatch.setattr(mu, "safe_save_file", fake)


# --- runs ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """World, tokenizer and manifest prepared once, and a fresh toy model (init-ckpt) to probe."""
    from tests.probe.test_probe import _prepare

    run_dir = tmp_path_factory.mktemp("disk-base") / "run"
    _prepare(run_dir, OVERRIDES)
    return run_dir


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the same for reference and faulty runs, whatever ran before
    yield
    torch.set_num_threads(before)


def _fresh(base: Path, run_dir: Path) -> Path:
    import shutil

    run_dir.mkdir(parents=True)
    for name in ("world", "tokenizer", "init-ckpt"):
        shutil.copytree(base / name, run_dir / name)
    shutil.copy2(base / "manifest.json", run_dir / "manifest.json")
    return run_dir


def _octo(capsys, command: str, run_dir: Path, *extra: str) -> tuple[int, str]:
    from octo.cli import main

    if command == "probe":
        argv = ["probe", str(run_dir / "init-ckpt"), "--recipe", str(QUICKSTART)]
    else:
        argv = [command, str(QUICKSTART)]
    argv += ["--run-dir", str(run_dir), *extra]
    for o in OVERRIDES:
        argv += ["--set", o]
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err


def _metrics(path: Path) -> list[dict]:
    from octo.runio import read_jsonl

    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_jsonl(path)]


@pytest.fixture(scope="module")
def reference(base, tmp_path_factory):
    """Uninterrupted runs: the pretrain stage and a probe."""
    import torch

    from octo.cli import main

    run_dir = _fresh(base, tmp_path_factory.mktemp("disk-ref") / "run")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        common = ["--run-dir", str(run_dir)] + [x for o in OVERRIDES for x in ("--set", o)]
        assert main(["cpt", str(QUICKSTART), "--stage", "pretrain", *common]) == 0
        assert main(["probe", str(run_dir / "init-ckpt"), "--recipe", str(QUICKSTART), *common]) == 0
    finally:
        torch.set_num_threads(before)
    return {"cpt": _metrics(run_dir / "cpt" / "pretrain" / "metrics.jsonl"),
            "gates": _metrics(run_dir / "cpt" / "pretrain" / "gates.jsonl"),
            "probe": _metrics(run_dir / "probes" / "init-ckpt" / "metrics.jsonl"),
            "evals": _metrics(run_dir / "probes" / "init-ckpt" / "evals.jsonl")}


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("octo: error:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def _checkpoints_ok(ckpt_root: Path, expect_latest: int) -> None:
    from octo.cpt.checkpoint import (
        latest_good_checkpoint,
        list_checkpoints,
        verify_checkpoint,
    )

    for _, d in list_checkpoints(ckpt_root):
        assert verify_checkpoint(d) is None, verify_checkpoint(d)
    assert latest_good_checkpoint(ckpt_root)[0] == expect_latest
    assert not [d.name for d in ckpt_root.iterdir() if d.name.startswith(".")], "a temporary directory was left"


# --- CPT -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["weights", "trainer-state", "manifest"])
def test_checkpoint_write_fails_then_rerun_resumes(where, base, reference, tmp_path, monkeypatch, capsys):
    run_dir = _fresh(base, tmp_path / "run")
    ckpt_root = run_dir / "cpt" / "pretrain" / "checkpoints"
    with monkeypatch.context() as m:
        fail_checkpoint(m, where, step=3)
        rc, err = _octo(capsys, "cpt", run_dir, "--stage", "pretrain")
    assert rc == 2
    line = _one_error_line(err)
    assert f"cannot write checkpoint {ckpt_root / 'step-3'}" in line, line
    assert "No space left on device" in line and "earlier checkpoints are intact" in line and ADVICE in line
    # step-2 is intact and the latest good one; nothing of step-3 is left
    _checkpoints_ok(ckpt_root, expect_latest=2)
    assert not (ckpt_root / "step-3").exists()
    rc, err = _octo(capsys, "cpt", run_dir, "--stage", "pretrain")
    assert rc == 0, err[-3000:]
    assert "resuming from cpt/pretrain/checkpoints/step-2" in err
    assert _metrics(run_dir / "cpt" / "pretrain" / "metrics.jsonl") == reference["cpt"]
    assert _metrics(run_dir / "cpt" / "pretrain" / "gates.jsonl") == reference["gates"]
    _checkpoints_ok(ckpt_root, expect_latest=4)


def test_metrics_write_fails_then_rerun_resumes(base, reference, tmp_path, monkeypatch, capsys):
    run_dir = _fresh(base, tmp_path / "run")
    metrics = run_dir / "cpt" / "pretrain" / "metrics.jsonl"
    with monkeypatch.context() as m:
        fault = fail_writes(m, str(metrics), 3)  # the row of step 3: half of it reaches the file
        rc, err = _octo(capsys, "cpt", run_dir, "--stage", "pretrain")
    assert rc == 2 and fault.count == 3
    line = _one_error_line(err)
    assert f"cannot write {metrics} (No space left on device); {ADVICE}" in line, line
    assert metrics.read_text().count("\n") == 2 and not metrics.read_text().endswith("\n")  # a partial row
    _checkpoints_ok(run_dir / "cpt" / "pretrain" / "checkpoints", expect_latest=2)
    rc, err = _octo(capsys, "cpt", run_dir, "--stage", "pretrain")
    assert rc == 0, err[-3000:]
    assert "resuming from cpt/pretrain/checkpoints/step-2" in err
    assert _metrics(metrics) == reference["cpt"]


def test_done_file_not_writable_then_rerun_finishes(base, reference, tmp_path, monkeypatch, capsys):
    """The last write of a stage (DONE.json, atomic) refused: the stage is not marked done, no temp file
    is left, and the rerun finishes from the final checkpoint."""
    run_dir = _fresh(base, tmp_path / "run")
    sdir = run_dir / "cpt" / "pretrain"
    with monkeypatch.context() as m:
        fail_writes(m, str(sdir / ".DONE.json.*"), 1, errno.EROFS)
        rc, err = _octo(capsys, "cpt", run_dir, "--stage", "pretrain")
    assert rc == 2
    line = _one_error_line(err)
    assert f"cannot write {sdir / 'DONE.json'} (Read-only file system)" in line, line
    assert "make it writable and rerun the same command to resume" in line
    assert not (sdir / "DONE.json").exists() and not list(sdir.glob(".DONE.json.*"))
    rc, err = _octo(capsys, "cpt", run_dir, "--stage", "pretrain")
    assert rc == 0, err[-3000:]
    assert "resuming from cpt/pretrain/checkpoints/step-4" in err
    assert _metrics(sdir / "metrics.jsonl") == reference["cpt"]


# --- probes --------------------------------------------------------------------------------------

def _probe_checkpoints(pdir: Path) -> dict[int, bool]:
    from octo.probe.checkpoints import CKPT_RE, probe_checkpoint_complete

    out = {}
    for d in (pdir / "checkpoints").iterdir():
        m = CKPT_RE.match(d.name)
        if m:
            out[int(m.group(1))] = probe_checkpoint_complete(d, int(m.group(1)))
    return out


def test_probe_metrics_write_fails_then_rerun_resumes(base, reference, tmp_path, monkeypatch, capsys):
    run_dir = _fresh(base, tmp_path / "run")
    pdir = run_dir / "probes" / "init-ckpt"
    with monkeypatch.context() as m:
        fail_writes(m, str(pdir / "metrics.jsonl"), 3)
        rc, err = _octo(capsys, "probe", run_dir)
    assert rc == 2
    line = _one_error_line(err)
    assert f"cannot write {pdir / 'metrics.jsonl'} (No space left on device); {ADVICE}" in line, line
    _probe_resumes_from_checkpoint_2(capsys, run_dir, pdir, reference)


def test_probe_checkpoint_write_fails_then_rerun_resumes(base, reference, tmp_path, monkeypatch, capsys):
    """TRL's own checkpoint write (safetensors into a full disk) stops the probe with one line; the
    half-written checkpoint-4 is removed, checkpoint-2 stays, and the rerun resumes from it."""
    run_dir = _fresh(base, tmp_path / "run")
    pdir = run_dir / "probes" / "init-ckpt"
    with monkeypatch.context() as m:
        _fail_safetensors(m, "checkpoint-4")
        rc, err = _octo(capsys, "probe", run_dir)
    assert rc == 2
    line = _one_error_line(err)
    assert f"cannot write probe checkpoints in {pdir / 'checkpoints'} (No space left on device)" in line, line
    assert "the last complete checkpoint is intact" in line and ADVICE in line
    _probe_resumes_from_checkpoint_2(capsys, run_dir, pdir, reference)


def _probe_resumes_from_checkpoint_2(capsys, run_dir, pdir, reference) -> None:
    """Only checkpoint-2 survived the fault; the rerun resumes from it and ends like the reference."""
    assert _probe_checkpoints(pdir) == {2: True}
    rc, err = _octo(capsys, "probe", run_dir)
    assert rc == 0, err[-3000:]
    assert "resuming from checkpoint-2" in err
    assert _metrics(pdir / "metrics.jsonl") == reference["probe"]
    assert _metrics(pdir / "evals.jsonl") == reference["evals"]


# --- the write helpers ---------------------------------------------------------------------------

@pytest.mark.parametrize("code,advice", [(errno.ENOSPC, ADVICE), (errno.EDQUOT, ADVICE),
                                         (errno.EROFS, "make it writable"), (errno.EACCES, "make it writable")])
def test_write_helpers_name_the_path(code, advice, tmp_path, monkeypatch):
    from octo.runio import JsonlWriter, write_json_atomic

    target = tmp_path / "x.json"
    write_json_atomic(target, {"v": 1})
    with monkeypatch.context() as m:
        fail_writes(m, str(tmp_path / "*"), 1, code)
        with pytest.raises(OctoError) as e:
            write_json_atomic(target, {"v": 2})
        assert str(target) in str(e.value) and os.strerror(code) in str(e.value) and advice in str(e.value)
        with JsonlWriter(tmp_path / "rows.jsonl") as w, pytest.raises(OctoError) as e:
            w.write({"step": 1})
        assert str(tmp_path / "rows.jsonl") in str(e.value) and advice in str(e.value)
    # the previous file is intact and no temporary file is left
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl", "x.json"]


def test_other_write_errors_propagate(tmp_path, monkeypatch):
    from octo.runio import JsonlWriter

    with monkeypatch.context() as m:
        fail_writes(m, str(tmp_path / "*"), 1, errno.EIO)
        with JsonlWriter(tmp_path / "rows.jsonl") as w, pytest.raises(OSError) as e:
            w.write({"step": 1})
    assert e.value.errno == errno.EIO and not isinstance(e.value, OctoError)


def test_library_errors_of_a_full_disk_are_recognised(tmp_path, monkeypatch):
    import octo.runio
    from octo.runio import write_errno, write_error

    chained = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    chained.__context__ = OSError(errno.ENOSPC, "No space left on device")  # as torch.save into a file object
    assert write_errno(chained) == errno.ENOSPC
    assert write_errno(RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")) \
        == errno.ENOSPC
    assert write_errno(RuntimeError("open file failed because of errno 13 on fopen: Permission denied")) \
        == errno.EACCES
    short = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert write_error(short, tmp_path) is None  # plenty of space: not a disk-full error
    monkeypatch.setattr(octo.runio, "_free_bytes", lambda path: 0)
    assert ADVICE in str(write_error(short, tmp_path))
    assert write_error(ValueError("bad value"), tmp_path) is None
