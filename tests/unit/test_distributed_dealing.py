"""How several processes share an epoch: every example once per epoch, on exactly one process, whatever the
process count; the launcher passes the command on without its own flags. No process group needed."""

from __future__ import annotations

import signal

import pytest

from tunesmith.config import build_config
from tunesmith.data.batch_order import epoch_batches
from tunesmith.errors import ConfigError
from tunesmith.training.distributed import check_strategy, deal, micro_batch_seed
from tunesmith.training.launch import stopped_code, without_launch_options


@pytest.mark.parametrize("processes", [1, 2, 3, 4])
def test_each_example_goes_to_one_process_once_per_epoch(processes):
    lengths = [(i * 37) % 50 + 1 for i in range(203)]  # 13 micro-batches of 16: the last window is short
    batches = epoch_batches(lengths, 16, seed=3, epoch=0, group_by_length=True)
    accumulation = 2 * processes
    seen: list[int] = []
    for start in range(0, len(batches), accumulation):
        window = batches[start : start + accumulation]
        shares = [deal(window, rank, processes) for rank in range(processes)]
        passes = {p for _, p in shares}
        assert len(passes) == 1  # every process runs as many passes (FSDP pads the short ones)
        assert max(len(mine) for mine, _ in shares) == passes.pop()
        dealt = sorted(i for mine, _ in shares for i, _ in mine)
        assert dealt == list(range(len(window)))  # each micro-batch of the window once, none twice
        seen += [j for mine, _ in shares for _, indices in mine for j in indices]
    assert sorted(seen) == list(range(203))


def test_a_micro_batch_seeds_by_its_place_in_the_run_not_by_its_process():
    seeds = {micro_batch_seed(42, step, i) for step in range(1, 50) for i in range(8)}
    assert len(seeds) == 49 * 8
    assert micro_batch_seed(42, 3, 1) == micro_batch_seed(42, 3, 1) != micro_batch_seed(43, 3, 1)


def test_the_relaunched_command_keeps_everything_but_the_launch_flags():
    argv = [
        "train",
        "--nproc",
        "2",
        "--data",
        "a.csv",
        "--nnodes=2",
        "--master-addr",
        "h",
        "lr=1",
        "--node-rank",
        "1",
    ]
    assert without_launch_options(argv) == ["train", "--data", "a.csv", "lr=1"]


def test_fsdp_refuses_what_it_cannot_shard():
    check_strategy(build_config({"method": {"name": "adalora"}}))  # ddp: anything goes
    with pytest.raises(ConfigError, match="method prefix cannot train with distributed.strategy=fsdp"):
        check_strategy(build_config({"method": {"name": "prefix"}, "distributed": {"strategy": "fsdp"}}))
    with pytest.raises(ConfigError, match="set train.precision to bf16"):
        check_strategy(build_config({"distributed": {"strategy": "fsdp"}, "train": {"precision": "fp16"}}))
    check_strategy(build_config({"method": {"name": "full"}, "distributed": {"strategy": "fsdp"}}))


def test_a_run_stopped_by_a_forwarded_signal_exits_with_that_signal():
    """A worker that stopped on the others' vote before its own copy of Ctrl-C arrived says SIGTERM (143);
    the launcher answers with the signal the user sent."""
    assert stopped_code(143, [signal.SIGINT]) == 130
    assert stopped_code(130, [signal.SIGINT]) == 130
    assert stopped_code(130, [signal.SIGTERM]) == 143
    assert stopped_code(143, []) == 143  # nothing forwarded: the worker's own code
    assert stopped_code(2, [signal.SIGINT]) == 2  # a user error stays itself
