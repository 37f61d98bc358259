"""Files the tool reads and writes: only regular files are read; the user's cache folder, when
to trust what is in it, and writes that never leave half a file. Below the front end, so that
the parser keeps its tables there too.

`/dev/zero` or `/dev/urandom` never end, and a FIFO blocks until someone writes to it: reading
one as a model, a CSV or a params file would use memory without limit or hang. A file is
opened without blocking and checked with fstat, so nothing can swap it between check and read.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from contextlib import contextmanager

from compiler.errors import ModelWarning

_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


class NotRegularFile(OSError):
    """The path names a device, a FIFO or a socket; `strerror` says which."""


def _not_regular(mode: int) -> str:
    kind = next((name for test, name in _KINDS if test(mode)), "something else")
    return f"it is {kind}, not a regular file"


def open_regular(path: str):
    """A binary file object for `path`; FileNotFoundError, IsADirectoryError or NotRegularFile
    (all OSError, with a `strerror` for messages) when it is not a regular file."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "it is a directory", path)
        if not stat.S_ISREG(mode):
            raise NotRegularFile(errno.EINVAL, _not_regular(mode), path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def special_file(path: str) -> str | None:
    """Why `path` is not a file to read when it names a device, a FIFO or a socket (`it is a
    character device, not a regular file`), else None (a regular file, a folder, or nothing).
    For paths on the command line: stat neither opens nor blocks."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else _not_regular(mode)


def cache_dir() -> str:
    """The user's own cache folder: `$DSL_CACHE_DIR`, else `$XDG_CACHE_HOME/dsl`, else
    `~/.cache/dsl`. Not a folder beside the model: a cached module runs as Python, and one
    planted beside a model (shipped with it, say) would run whatever it holds."""
    if os.environ.get("DSL_CACHE_DIR"):
        return os.environ["DSL_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dsl")


_UMASK = os.umask(0o022)  # read once, at import (os.umask can only be read by setting it)
os.umask(_UMASK)


def atomic_write(path: str, data: bytes, private: bool = False) -> None:
    """Write to a temporary file beside `path`, then rename: never a half-written file. It gets
    the usual mode (0666 less the umask), or stays 0600 when `private`."""
    with replacing(path, private) as f:
        f.write(data)


@contextmanager
def replacing(path: str, private: bool = False, text: bool = False):
    """A new file beside `path` (binary, or UTF-8 text), renamed over `path` when the block ends
    and removed if it fails: never a half-written file. Modes as `atomic_write`'s. A `path`
    that is there and is not a regular file (`-o /dev/null`, `/dev/stdout`, a pipe) is written
    into: renamed over, the device itself would be replaced by a file."""
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except OSError:  # absent (or unreadable: the rename below says why)
        regular = True
    if not regular:
        with (open(path, "w", encoding="utf-8", newline="") if text else open(path, "wb")) as f:
            yield f
        return
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with (os.fdopen(fd, "w", encoding="utf-8", newline="") if text else
              os.fdopen(fd, "wb")) as f:
            if hasattr(os, "fchmod") and not private:  # mkstemp makes 0600
                os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            yield f
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def trusted(path: str, warnings: list[ModelWarning], folder: bool = False) -> bool:
    """Whether the cache folder (or a file in it) may be trusted: it is this user's and no one
    else can write it. A folder that does not exist yet is made by its writer, as 0700."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return folder
    except OSError:
        return False
    mine = not hasattr(os, "getuid") or st.st_uid == os.getuid()  # no owners to compare on Windows
    if mine and not st.st_mode & 0o022:
        return True
    what = "compile cache folder" if folder else "cached module"
    warnings.append(ModelWarning(
        f"the {what} {path} is not used: "
        + ("others can write to it" if mine else "it belongs to another user"),
        None, "a cached module runs as Python; set DSL_CACHE_DIR to a folder of your own "
        "(chmod go-w)" if folder else "it is compiled again and replaced"))
    return False
