import os
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# The package from this checkout, unless one is installed and asked for.
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, HERE)


def _bin_dir():
    explicit = os.environ.get("FANMAP_BIN")
    if explicit:
        return os.path.dirname(explicit) if os.path.isfile(explicit) else explicit
    found = shutil.which("fanmap")
    return os.path.dirname(found) if found else os.path.join(ROOT, "build", "bin")


@pytest.fixture(scope="session")
def bin_dir():
    d = _bin_dir()
    if not os.path.isfile(os.path.join(d, "fanmap")):
        pytest.fail(f"no fanmap binary in {d}: build first or set FANMAP_BIN")
    return d


@pytest.fixture(scope="session")
def fanmap_bin(bin_dir):
    return os.path.join(bin_dir, "fanmap")


@pytest.fixture
def gate():
    g = Gate()
    yield g
    g.close()


from gate import Gate  # noqa: E402
