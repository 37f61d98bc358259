"""Files the tool writes: the user's cache folder, when to trust what is in it, and writes that
never leave half a file. Below the front end, so that the parser keeps its tables there too."""
from __future__ import annotations

import os
import tempfile

from compiler.errors import ModelWarning


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
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod") and not private:  # mkstemp makes 0600
                os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            f.write(data)
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
