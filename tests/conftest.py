"""Test-wide settings: the compile cache goes to a temporary folder, not the user's."""
import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("DSL_CACHE_DIR", str(tmp_path_factory.mktemp("dsl-cache")))
    yield
    mp.undo()
