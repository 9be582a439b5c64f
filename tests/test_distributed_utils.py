"""Tests for engine/distributed.py: evaluation sharding, single-process no-ops and a real
2-process gloo group (spawned like torchrun would: WORLD_SIZE/RANK/LOCAL_RANK/MASTER_* env)."""
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from engine import distributed as D
from utils.metrics import confusion_matrix

LAUNCH_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.mark.parametrize("n", [0, 1, 2, 5, 7, 10, 101])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
def test_shard_indices_cover_each_index_once(n, world):
    shards = [D.shard_indices(n, r, world) for r in range(world)]
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(n)) and len(flat) == n  # no duplicates, no padding
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_shard_indices_rejects_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        D.shard_indices(10, 2, 2)
    with pytest.raises(ValueError, match="world"):
        D.shard_indices(10, 0, 0)
    with pytest.raises(ValueError, match="n"):
        D.shard_indices(-1, 0, 1)


def test_single_process_is_a_no_op(monkeypatch):
    for var in LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    info = D.init_distributed("cpu")
    assert tuple(info) == (False, 0, 1, 0, torch.device("cpu"))
    assert D.is_main() and D.rank() == 0 and D.world_size() == 1
    t = torch.tensor([1, 2])
    assert D.all_reduce_sum(t) is t and t.tolist() == [1, 2]
    D.barrier()
    D.cleanup()
    assert D.any_failed(False) is False and D.any_failed(True) is True
    with pytest.raises(KeyError):
        with D.fail_together():
            raise KeyError("own error is re-raised unchanged")
    if not torch.cuda.is_available():
        with pytest.warns(UserWarning, match="CUDA is not available"):
            assert D.init_distributed("cuda").device == torch.device("cpu")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """One rank. Runs in a spawned process; results go to out_dir/rank{r}.json."""
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    if rank == 0:
        os.environ["LOCAL_RANK"] = "0"  # torchrun style
        info = D.init_distributed("cpu", timeout_s=60)
    else:
        os.environ.pop("LOCAL_RANK", None)  # old launcher style: --local-rank argument only
        info = D.init_distributed("cpu", local_rank=rank, timeout_s=60)
    res = {"info": [info.enabled, info.rank, info.world_size, info.local_rank, str(info.device)],
           "backend": torch.distributed.get_backend(), "is_main": D.is_main(),
           "rank": D.rank(), "world": D.world_size()}
    res["sum"] = D.all_reduce_sum(torch.tensor([rank + 1.0, 10.0 * rank])).tolist()

    # Distributed evaluation: each rank scores its shard, one all-reduce gives the full matrix.
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (7, 5, 6), generator=gen)
    pred = torch.randint(0, 4, (7, 5, 6), generator=gen)
    mine = D.shard_indices(len(target), rank, world)
    cm = confusion_matrix(pred[mine], target[mine], 4)
    res["cm_ok"] = bool(torch.equal(D.all_reduce_sum(cm), confusion_matrix(pred, target, 4)))

    try:  # rank 1 fails; rank 0 must stop too instead of waiting in its next collective
        with D.fail_together("evaluation"):
            if rank == 1:
                raise ZeroDivisionError("boom")
        res["failure"] = None
    except Exception as exc:  # noqa: BLE001 - the test records which exception each rank saw
        res["failure"] = f"{type(exc).__name__}: {exc}"
    D.barrier()
    D.cleanup()
    res["after_cleanup"] = [D.is_dist(), D.world_size()]
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(res, f)


@pytest.mark.slow
def test_two_process_gloo_group(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    res = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]
    for r, out in enumerate(res):
        assert out["info"] == [True, r, world, r, "cpu"]
        assert out["backend"] == "gloo"
        assert out["is_main"] == (r == 0) and out["rank"] == r and out["world"] == world
        assert out["sum"] == [3.0, 10.0]
        assert out["cm_ok"]
        assert out["after_cleanup"] == [False, 1]
    assert res[1]["failure"] == "ZeroDivisionError: boom"
    assert res[0]["failure"].startswith("RuntimeError: evaluation failed on another rank")
