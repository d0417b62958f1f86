"""Starting the processes of a distributed run, and carrying the user's signals to them.

`tunesmith train --nproc N` runs PyTorch's elastic agent (the code torchrun runs: `torch.distributed.run.run`,
as accelerate's launcher also calls it) inside this process, which starts N workers, each running the same
command. The agent puts every worker in a session of its own, so a Ctrl-C in the terminal reaches this process
alone; its own handling (on by default) forwards a signal to the workers and SIGKILLs any still alive 30 s
later, which would cut a checkpoint of a large model short, and a second press would not reach them. So here
SIGINT and SIGTERM are forwarded to the workers as they come, with no deadline: the first one makes each
worker finish its optimizer step and write a checkpoint (training/interrupt.py), a second Ctrl-C stops them at
once. The workers print what happened; this process exits with their exit code, without the agent's failure
report (the error a worker printed is the one the user needs).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from tunesmith.config import RunConfig
from tunesmith.errors import UserError
from tunesmith.processes import usable_cores
from tunesmith.training.distributed import check_process_count, check_strategy

LAUNCH_OPTIONS = ("--nproc", "--nnodes", "--node-rank", "--master-addr", "--master-port")
FORWARDED = (signal.SIGINT, signal.SIGTERM)


def without_launch_options(argv: Sequence[str]) -> list[str]:
    """The command line each worker runs: this one without the options that asked for the workers."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in LAUNCH_OPTIONS:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def launcher_arguments(
    argv: Sequence[str], nproc: int, nnodes: int, node_rank: int, master_addr: str | None, master_port: int
) -> list[str]:
    """torchrun's command line for running this same command in `nproc` processes per node."""
    # the agent's own handlers stay off SIGINT and SIGTERM (the forwarder has them); it keeps SIGHUP and SIGQUIT
    args = [f"--nproc-per-node={nproc}", "--signals-to-handle=SIGHUP,SIGQUIT"]
    if nnodes == 1:
        args.append("--standalone")  # a local rendezvous on a free port
    else:
        if master_addr is None:
            raise UserError("--nnodes above 1 needs --master-addr (the address of node 0) on every node")
        args += [
            f"--nnodes={nnodes}",
            f"--node-rank={node_rank}",
            f"--master-addr={master_addr}",
            f"--master-port={master_port}",
        ]
    return [*args, "-m", "tunesmith", *without_launch_options(argv)]


class _Forwarder:
    """While entered: SIGINT and SIGTERM go on to every worker (and whatever each started) as they come. One
    that arrives before any worker exists ends the launch (KeyboardInterrupt): there is nothing to save yet."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _Forwarder:
        for sig in FORWARDED:
            self._previous[sig] = signal.signal(sig, self._forward)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        import psutil

        self.received.append(signum)
        workers = psutil.Process().children()
        if not workers:
            raise KeyboardInterrupt
        for worker in workers:  # each leads its own process group (the agent's start_new_session)
            with contextlib.suppress(ProcessLookupError, PermissionError):  # gone already
                os.killpg(worker.pid, signum)


def launch(
    config: RunConfig,
    argv: Sequence[str],
    nproc: int,
    nnodes: int,
    node_rank: int,
    master_addr: str | None,
    master_port: int,
) -> int:
    """`tunesmith train --nproc N`: the run's process count and strategy are checked here, once (not in
    every worker), then the command runs again in each worker (`relaunch`); returns the exit code."""
    check_process_count(config.train, nproc * nnodes)
    check_strategy(config)
    return relaunch(argv, nproc, nnodes, node_rank, master_addr, master_port)


def relaunch(
    argv: Sequence[str], nproc: int, nnodes: int, node_rank: int, master_addr: str | None, master_port: int
) -> int:
    """Run this same command in `nproc` worker processes per node and wait for them; returns the exit code
    (the first failed worker's, 128 + the signal for a worker killed by one)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.run import get_args_parser, run

    parser = get_args_parser()
    arguments = launcher_arguments(argv, nproc, nnodes, node_rank, master_addr, master_port)
    if "--signals-to-handle" not in parser._option_string_actions:  # an older torch: its agent forwards them
        arguments = [a for a in arguments if not a.startswith("--signals-to-handle")]
    args = parser.parse_args(arguments)
    if (
        "OMP_NUM_THREADS" not in os.environ
    ):  # torchrun's default is 1 thread a worker, with a warning: share them
        os.environ["OMP_NUM_THREADS"] = str(max(1, usable_cores() // nproc))
    quieted = _quiet_failure_reports()
    try:
        with _Forwarder() as forwarder:
            try:
                run(args)
            except ChildFailedError as failed:
                rank, failure = failed.get_first_failure()
                if failure.exitcode >= 0:
                    return stopped_code(failure.exitcode, forwarder.received)
                signum = -failure.exitcode
                if signum not in forwarder.received:
                    hint = " (the system may have run out of memory)" if signum == signal.SIGKILL else ""
                    print(
                        f"tunesmith: process rank {rank} was killed by {signal.Signals(signum).name}{hint}",
                        file=sys.stderr,
                    )
                return 128 + signum
            except RendezvousError as exc:
                raise UserError(f"the processes could not meet (rendezvous): {exc}") from None
        return 0
    finally:
        for logger, level in quieted:
            logger.setLevel(level)


def stopped_code(code: int, received: Sequence[int]) -> int:
    """The launcher's exit code for a worker's exit `code`, given the signals it forwarded. A worker stopped
    by the signal, or by the other processes' agreement to stop (one may not have got its own copy yet, and
    then says SIGTERM), exits 128 + its signal: the launcher answers with the signal the user sent, as a
    shell expects (130 for Ctrl-C)."""
    if received and code in {128 + s for s in FORWARDED}:
        return 128 + received[0]
    return code


def _quiet_failure_reports() -> list[tuple[logging.Logger, int]]:
    """The elastic agent's loggers set their own level (from $LOGLEVEL, WARNING by default), so the parent's
    level does not filter them; its per-worker failure line is an error, which the worker's message says
    better. Raised to CRITICAL while the workers run; returns what to put back."""
    quieted = []
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("torch.distributed.elastic") and isinstance(logger, logging.Logger):
            quieted.append((logger, logger.level))
            logger.setLevel(logging.CRITICAL)
    return quieted
