"""One writer per run folder (runs.writing): an OS lock that a second writer meets at once, with the holder
named, and that the kernel drops when the holder dies, however it dies."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tunesmith import cli
from tunesmith.errors import UserError
from tunesmith.runs import LOCK, RunFolder, writing

HOLD = textwrap.dedent(
    """
    import sys, time
    from tunesmith.runs import writing
    with writing(sys.argv[1], "tunesmith train --out runs/x --resume"):
        print("held", flush=True)
        time.sleep(120)
    """
)


@pytest.fixture
def holder(tmp_path):
    folder = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "held\n"
    yield folder, process
    process.kill()
    process.wait()


def test_a_second_writer_is_refused_with_the_holder_named(holder, capsys):
    folder, process = holder
    with pytest.raises(UserError) as refused, writing(folder):
        pass
    message = str(refused.value)
    assert f"{folder} is being written by another process (PID {process.pid}, " in message
    assert "`tunesmith train --out runs/x --resume`" in message
    with pytest.raises(SystemExit) as done:  # the same through the CLI: exit 2, one line, no traceback
        cli.main(["rollback", str(folder), "--to", "v1"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tunesmith: {folder} is being written by another process (PID {process.pid}")
    assert "Traceback" not in err


def test_the_lock_dies_with_its_holder(holder):
    folder, process = holder
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with writing(folder, "tunesmith export"):  # no stale lock to clear by hand
        assert (
            (folder / LOCK).read_text().startswith(f'{{"pid": {os.getpid()}, "command": "tunesmith export"')
        )


def test_a_folder_made_only_for_the_lock_is_removed_when_the_writer_fails(tmp_path):
    folder = tmp_path / "new-run"
    with pytest.raises(UserError), writing(folder):
        raise UserError("the data check found errors")
    assert not folder.exists()
    existing = tmp_path / "kept"
    existing.mkdir()
    (existing / "precious.txt").write_text("earlier results")
    with writing(existing):
        pass
    assert [p.name for p in existing.iterdir()] == ["precious.txt"]


def test_the_lock_file_does_not_count_as_content_of_a_run_folder(tmp_path):
    folder = tmp_path / "run"
    with writing(folder):
        run = RunFolder(folder)
        run.check_creatable(overwrite=False)  # only the lock: empty
        (folder / "config.yaml").write_text("task: classification\n")
        run.create(overwrite=True)
        assert [p.name for p in folder.iterdir()] == [LOCK]
    assert not folder.exists()  # the lock goes with its writer, and the folder it made for nothing
