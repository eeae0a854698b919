"""The ranks of a data-parallel stage: DDP, or FSDP2 with full-state checkpoints gathered to rank 0.

    accelerate launch --config_file recipes/accelerate/fsdp.yaml --num_processes W -m octo.cli cpt RECIPE
    torchrun --nproc_per_node W -m octo.cli cpt RECIPE       # DDP (gloo on a CPU)

accelerate's ``FullyShardedDataParallelPlugin`` reads the ``FSDP_*`` settings, and octo applies them
with torch's ``fully_shard`` itself rather than through ``Accelerator.prepare``, because accelerate
runs a CPU launch as plain DDP: one code path, the one tested here on CPU with gloo. Checkpoints keep
the single-process format whatever the sharding, so they resume at any world size. DeepSpeed is refused.
One process gets :class:`LocalProcess` (plain torch, no accelerate import), so the loop has no branch
on the number of processes.
"""

from __future__ import annotations

import copy
import os
from contextlib import nullcontext

from octo.errors import ConfigError, OctoError


def world_size() -> int:
    """Processes of this stage: ``WORLD_SIZE`` as ``accelerate launch`` and ``torchrun`` set it (else 1)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_state():
    """accelerate's process state (initialises the process group) when world_size() > 1, else None."""
    if world_size() <= 1:
        return None
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _env_true(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def is_fsdp2_available() -> bool:
    """Whether torch has FSDP2 (``fully_shard``) and accelerate the FSDP2 helpers octo uses."""
    try:
        from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy  # noqa: F401
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        return False
    return True


def clip_grad_norm(params, max_norm: float) -> float:
    """Clip the gradients to total norm ``max_norm``; the norm before clipping (under FSDP, over all shards)."""
    import torch

    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


class LocalProcess:
    """A stage trained by one process: :class:`World`'s interface with nothing to share or gather."""

    rank, size, fsdp = 0, 1, False

    def shard(self, model):
        return model

    def prepare(self, model, opt):
        return model, opt

    def plain(self, model):
        return model

    def place(self, module) -> None:
        pass

    def to_device(self, batch: dict) -> dict:
        return batch

    def no_sync(self, model, last: bool):
        return nullcontext()

    def backward(self, loss) -> None:
        loss.backward()

    def full_state(self, model, opt) -> dict:
        return opt.state_dict()

    def load_optimizer(self, model, opt, state: dict) -> None:
        opt.load_state_dict(state)

    def load_weights(self, model, weights: dict) -> None:
        import torch

        with torch.no_grad():
            model.load_state_dict(weights)

    def barrier(self) -> None:
        pass

    def sum(self, *values: float) -> list[float]:
        return list(values)


def processes(micro_per_step: int) -> LocalProcess | World:
    """The processes of a stage: :class:`World` under ``accelerate launch`` / ``torchrun``, else one."""
    return World(micro_per_step) if world_size() > 1 else LocalProcess()


class World:
    """The ranks of a data-parallel stage (``accelerate launch`` / ``torchrun``, W = world size). Every rank draws the
    step's micro-batches from the same packer and trains on rank, rank + W, ...; each loss is divided by the step's
    global target count and multiplied by W, so the averaged gradient is the single-process one. Rank 0 alone writes.
    FSDP (``self.fsdp``) reduce-scatters at every micro-batch (holding unsharded gradients would cost the memory FSDP
    saves); a checkpoint gathers the full state to rank 0, which keeps an unsharded CPU copy (``self.mirror``) to write
    and gate."""

    def __init__(self, micro_per_step: int):
        import torch
        from accelerate import Accelerator
        from accelerate.utils import DistributedType

        if _env_true("ACCELERATE_USE_DEEPSPEED"):
            raise OctoError("octo's trainer does not run under DeepSpeed (its sharded optimizer states are not "
                            "gathered into octo's full-state checkpoints, and it cannot be verified on the CPU "
                            "machines octo is tested on); use recipes/accelerate/fsdp.yaml or ddp.yaml")
        self.fsdp = _env_true("ACCELERATE_USE_FSDP")
        if self.fsdp and os.environ.get("FSDP_VERSION", "1") != "2":
            # checked before accelerate builds its FSDP1 plugin, which needs an accelerator to exist
            raise OctoError(f"octo shards with FSDP2 (torch's fully_shard) only, and the accelerate config asks for "
                            f"fsdp_version {os.environ.get('FSDP_VERSION', '1')}; set fsdp_version: 2 "
                            "(FSDP_VERSION=2 under torchrun)")
        if self.fsdp and not is_fsdp2_available():
            raise OctoError("this environment lacks FSDP2 (torch's fully_shard or accelerate's FSDP2 helpers; octo's "
                            "FSDP path is tested with torch 2.13 and accelerate 1.15); upgrade torch and accelerate")
        self.acc = Accelerator(cpu=not torch.cuda.is_available())
        kind = self.acc.distributed_type
        if kind not in (DistributedType.MULTI_CPU, DistributedType.MULTI_GPU, DistributedType.FSDP):
            raise OctoError(f"accelerate distributed type {kind} is not supported by octo's trainer; use "
                            "recipes/accelerate/ddp.yaml or fsdp.yaml")
        if self.acc.gradient_accumulation_steps != 1:
            raise OctoError("the accelerate config sets gradient_accumulation_steps; remove it, octo "
                            "accumulates gradients up to cpt.batch_tokens itself")
        self.rank, self.size, self.device = self.acc.process_index, self.acc.num_processes, self.acc.device
        if micro_per_step % self.size:
            raise ConfigError("cpt.batch_tokens", f"gives {micro_per_step} micro-batches per step, which "
                                                  f"{self.size} processes cannot share evenly; make it a multiple "
                                                  f"of seq_len x micro_batch_size x {self.size}")
        self.mirror = None
        self.plugin = self._fsdp_plugin() if self.fsdp else None

    def _fsdp_plugin(self):
        """accelerate's FSDP settings: its state's plugin on GPUs, else one read from the FSDP_* variables."""
        from accelerate.utils import FullyShardedDataParallelPlugin

        plugin = getattr(self.acc.state, "fsdp_plugin", None) or FullyShardedDataParallelPlugin()
        if plugin.activation_checkpointing:
            raise OctoError("the accelerate config sets fsdp_activation_checkpointing, which octo's trainer does "
                            "not implement; set it to false")
        mp = self.acc.mixed_precision
        if mp not in ("no", "bf16"):
            raise OctoError(f"octo's FSDP path trains in float32 or bf16, and the accelerate config asks for "
                            f"mixed_precision {mp}; set it to bf16 or no")
        if mp != "no" and plugin.mixed_precision_policy is None:
            plugin.set_mixed_precision(mp)
        return plugin

    def shard(self, model):
        """FSDP: shard ``model`` in place with ``fully_shard`` (one unit per module the config's wrap policy
        picks, a Llama decoder layer, then the root) and return it; rank 0 first keeps an unsharded copy.
        DDP: ``model`` unchanged. An optimizer must be built on the returned model's parameters."""
        if not self.fsdp:
            return model
        from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
        from accelerate.utils.other import get_module_children_bottom_up
        from torch.distributed.fsdp import (
            CPUOffloadPolicy,
            MixedPrecisionPolicy,
            fully_shard,
        )

        plugin = self.plugin
        if self.rank == 0:
            self.mirror = copy.deepcopy(model).cpu()
        kwargs = {"reshard_after_forward": plugin.reshard_after_forward, "offload_policy": plugin.cpu_offload,
                  "mp_policy": plugin.mixed_precision_policy or MixedPrecisionPolicy()}
        if not isinstance(plugin.cpu_offload, CPUOffloadPolicy):
            model.to(self.device)
        try:
            policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
        except ValueError as err:  # a fsdp_transformer_layer_cls_to_wrap the model does not have
            raise OctoError(f"the accelerate config's FSDP wrap policy does not fit the model: {err}") from None
        if policy is not None:
            for module in get_module_children_bottom_up(model)[:-1]:
                if policy(module):
                    fully_shard(module, **kwargs)
        fully_shard(model, **kwargs)
        return model

    def prepare(self, model, opt):
        """DDP: accelerate's wrappers of ``model`` and ``opt``; FSDP: both as they are."""
        return (model, opt) if self.fsdp else self.acc.prepare(model, opt)

    def plain(self, model):
        """The unsharded model rank 0 checkpoints and gates: DDP's unwrapped module; FSDP's copy (None on
        other ranks), holding the weights of the last :meth:`full_state` (or of the start)."""
        return self.mirror if self.fsdp else self.acc.unwrap_model(model)

    def place(self, module) -> None:
        """Move a module every rank keeps whole (the KL reference) to this rank's device."""
        module.to(self.device)

    def to_device(self, batch: dict) -> dict:
        return {key: v.to(self.device) for key, v in batch.items()}

    def backward(self, loss) -> None:
        """Backward of a micro-batch loss; times W, as the ranks' gradients are averaged (see the class docstring)."""
        self.acc.backward(loss * self.size)

    def no_sync(self, model, last: bool):
        """DDP all-reduces at the backward of a step's last micro-batch only; FSDP reduces at every one."""
        return nullcontext() if self.fsdp or last else self.acc.no_sync(model)

    def full_state(self, model, opt) -> dict | None:
        """The full optimizer state dict on rank 0 (None elsewhere), keyed by parameter index as one
        process's ``opt.state_dict()``; under FSDP every rank must call it, and it refreshes rank 0's
        unsharded copy of the model with the gathered weights."""
        if not self.fsdp:
            return opt.state_dict() if self.rank == 0 else None
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        weights = get_model_state_dict(model, options=options)
        # an optimizer that has not stepped has no state; torch's getter would make one by stepping it
        optim = get_optimizer_state_dict(model, opt, options=options) if opt.state else None
        if self.rank != 0:  # cpu_offload: the gathered tensors stay on rank 0, the others get {}
            return None
        self.mirror.load_state_dict(weights)
        return _index_keyed(optim) if optim is not None else opt.state_dict()

    def load_optimizer(self, model, opt, state: dict) -> None:
        """Load a full optimizer state dict (keyed by parameter index); FSDP shards it over the ranks."""
        if not self.fsdp or not state["state"]:
            opt.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        names = {id(p): name for name, p in model.named_parameters()}
        fqns = [names[id(p)] for group in opt.param_groups for p in group["params"]]
        keyed = {"state": {fqns[i]: v for i, v in state["state"].items()},
                 "param_groups": [{**g, "params": [fqns[i] for i in g["params"]]} for g in state["param_groups"]]}
        set_optimizer_state_dict(model, opt, keyed, options=StateDictOptions(full_state_dict=True))

    def load_weights(self, model, weights: dict) -> None:
        """Load full weights into the running model (every rank passes the same full state dict)."""
        import torch

        if not self.fsdp:
            with torch.no_grad():
                self.acc.unwrap_model(model).load_state_dict(weights)
            return
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
        )

        set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True))

    def barrier(self) -> None:
        self.acc.wait_for_everyone()

    def sum(self, *values: float) -> list[float]:
        import torch
        import torch.distributed as td

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        td.all_reduce(t)
        return t.tolist()


def _index_keyed(state: dict) -> dict:
    """torch's full optimizer state dict (keyed by parameter name) keyed by parameter index, in the
    optimizer's order, as ``torch.optim.Optimizer.state_dict`` keys it."""
    index: dict[str, int] = {}
    groups = [{**g, "params": [index.setdefault(name, len(index)) for name in g["params"]]}
              for g in state["param_groups"]]
    return {"state": {index[name]: v for name, v in state["state"].items()}, "param_groups": groups}
