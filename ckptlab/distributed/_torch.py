"""torch.distributed as an engine: every rank calls the save, rank 0 commits (public)."""

from __future__ import annotations

import datetime
import pickle
import re
from collections.abc import Callable, Sequence
from typing import Any

from ckptlab.distributed._coordinator import SaveStats
from ckptlab.distributed._worker import WorkerFailure, failure_from


class TorchEngine:
    """The ranks of an initialised ``torch.distributed`` process group (an SPMD engine).

    Every rank calls :func:`ckptlab.distributed.save` (or ``write``) with its own state; each
    writes its part, a ``monitored_barrier`` (gloo) names ranks that died or hang, the manifests
    are gathered to rank 0, which commits and tells every rank the outcome.

    Parameters
    ----------
    group
        A gloo process group (default: the default group, which must then use gloo).  Jobs that
        train with NCCL create one for checkpoint metadata: ``dist.new_group(backend="gloo")``.

    Examples
    --------
    A job of one rank (a real job runs this on every rank, under ``torchrun``):

    >>> import ckptlab as ck, tempfile, torch.distributed as dist
    >>> from ckptlab import distributed as ckd
    >>> directory = tempfile.mkdtemp()
    >>> rendezvous = f"file://{directory}/rendezvous"
    >>> dist.init_process_group("gloo", init_method=rendezvous, rank=0, world_size=1)
    >>> state = ck.Checkpoint(w=ck.Variable([1.0]))
    >>> path = ckd.save(f"{directory}/ckpt", state, engine=TorchEngine())
    >>> ck.list_variables(path)
    [('save_counter/.ATTRIBUTES/VARIABLE_VALUE', []), ('w/.ATTRIBUTES/VARIABLE_VALUE', [1])]
    >>> dist.destroy_process_group()
    """

    ships_tasks = False

    def __init__(self, group: Any = None) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            raise RuntimeError(
                "torch.distributed is not initialised; call dist.init_process_group('gloo', ...) "
                "on every rank before creating a TorchEngine."
            )
        self._dist = dist
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.is_coordinator = self.rank == 0
        self.sent_bytes = 0
        self.received_bytes = 0
        self.last_stats: SaveStats | None = None
        self._broken = False

    def __repr__(self) -> str:
        return f"TorchEngine(rank={self.rank}, world_size={self.world_size})"

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (locally only once the group has lost a rank)."""
        if self._broken:
            return value
        box = [value]
        if self.is_coordinator:
            self.sent_bytes += len(pickle.dumps(value)) * (self.world_size - 1)
        self._dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def run(
        self, task: Callable[..., Any], timeout: float, items: Sequence[Any] | None = None
    ) -> list[Any] | None:
        """Run this rank's part, check every rank is alive, gather the outcomes to rank 0."""
        try:
            outcome: Any = task(self.rank) if items is None else task(self.rank, items[self.rank])
        except BaseException as error:
            outcome = failure_from(self.rank, error, worker=f"rank {self.rank}")
        try:
            self._dist.monitored_barrier(
                group=self.group, timeout=datetime.timedelta(seconds=timeout), wait_all_ranks=True
            )
        except RuntimeError as error:
            self._broken = True
            if not self.is_coordinator:
                raise _abandoned(self.rank, error) from error
            return [outcome, *self._missing(error, timeout)]
        gathered: list[Any] | None = [None] * self.world_size if self.is_coordinator else None
        self._dist.gather_object(outcome, gathered, dst=0, group=self.group)
        if gathered is not None:
            self.received_bytes += sum(len(pickle.dumps(o)) for o in gathered[1:])
        return gathered

    def _missing(self, error: RuntimeError, timeout: float) -> list[WorkerFailure]:
        found = re.search(r"[Rr]anks? ([\d, ]+) failed to pass", str(error))
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        ranks = (
            [int(r) for r in re.findall(r"\d+", found.group(1))]
            if found
            else list(range(1, self.world_size))
        )
        return [
            WorkerFailure(
                rank=rank,
                worker=f"rank {rank}",
                reason="timeout",
                error=f"did not reach the barrier (it died, or hung past {timeout:g} s): {first}",
            )
            for rank in ranks
        ]


def _abandoned(rank: int, error: RuntimeError) -> Exception:
    from ckptlab.distributed._coordinator import WorkerError

    return WorkerError(
        f"Multi-worker save abandoned on rank {rank}: another rank died or hangs, so nothing was "
        f"committed and the previous checkpoint is still the latest ({str(error).splitlines()[0]})."
    )
