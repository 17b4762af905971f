import os
import sys

# tests/reference.py is a helper module shared by the test files
sys.path.insert(0, os.path.dirname(__file__))


import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _private_ligand_cache(tmp_path_factory):
    """Ligand parameters computed by the tests go to a cache of their own, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCAO_CACHE_DIR", str(tmp_path_factory.mktemp("bencao-cache")))
        yield
