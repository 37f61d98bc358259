"""dsl.front.files: writes that never leave half a file, and never replace what is not a file."""
import os
import stat
import threading

from dsl.front.files import atomic_write, replacing


def test_atomic_write_replaces_a_regular_file(tmp_path):
    path = tmp_path / "out.py"
    path.write_bytes(b"old")
    atomic_write(str(path), b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.py"]  # no temporary left


def test_a_pipe_is_written_into_not_replaced(tmp_path):
    """`dsl compile -o /dev/null` (as root) replaced the device with a regular file: a path that
    is not a regular file is written into. A FIFO stands for the device here."""
    fifo = str(tmp_path / "pipe")
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    atomic_write(fifo, b"module text")
    reader.join(10)
    assert got == [b"module text"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_text_into_a_pipe(tmp_path):
    fifo = str(tmp_path / "pipe")
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    with replacing(fifo, text=True) as f:
        f.write("∂ line\n")
    reader.join(10)
    assert got == ["∂ line\n".encode("utf-8")]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
