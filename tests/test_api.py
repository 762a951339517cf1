"""The public API: each root name is the function or class it says, in every import order, every time.

Each case runs in a fresh interpreter, since import order is exactly what can break it.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import icsd
from icsd.core.errors import ParameterError

CHECK = """
import numpy as np
pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
import icsd
for _ in range(2):  # twice: the second call is where a rebinding shows
    q = icsd.quantize(pixels, 4, strategy="MKM", seed=1)
    assert q.palette.shape == (4, 3) and q.indices.shape == (20, 30), q
    r = icsd.compress(open(PATH, "rb").read(), icsd.CompressParams(colors=4, scale=2))
    assert r.data[:8] == b"\\x89PNG\\r\\n\\x1a\\n" and r.colors == 4, r
    assert callable(quantize) and callable(compress)
    assert quantize(pixels, 4).palette.shape == (4, 3)
    assert compress(open(PATH, "rb").read(), CompressParams(colors=4)).colors == 4
print("ok")
"""

ORDERS = {
    "import icsd": "import icsd\nfrom icsd import quantize, compress, CompressParams",
    "from icsd import": "from icsd import quantize, compress, CompressParams",
    "core submodules first": (
        "import icsd.core.quantization, icsd.core.pipeline, icsd.core.params, icsd.core.jobs\n"
        "from icsd import quantize, compress, CompressParams"
    ),
    "icsd.core names": "from icsd.core import quantize, compress, CompressParams",
    "root names after core": "import icsd.core\nimport icsd\nquantize, compress, CompressParams = "
                             "icsd.quantize, icsd.compress, icsd.CompressParams",
}


@pytest.mark.parametrize("prelude", ORDERS.values(), ids=ORDERS.keys())
def test_public_names_work_in_every_import_order(prelude: str, tmp_path) -> None:
    photo = tmp_path / "p.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(photo)
    code = prelude + "\nPATH = " + repr(str(photo)) + CHECK
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_no_root_module_shares_a_public_name() -> None:
    import pkgutil

    modules = {info.name for info in pkgutil.iter_modules(icsd.__path__)}
    assert modules.isdisjoint(icsd.__all__), modules & set(icsd.__all__)


def test_core_errors_are_value_errors_naming_the_argument() -> None:
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="colors must be between 2 and 256") as caught:
        icsd.quantize(pixels, 300)
    assert isinstance(caught.value, ParameterError) and caught.value.argument == "colors"
    with pytest.raises(TypeError, match="colors must be an integer"):
        icsd.quantize(pixels, 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown strategy 'nope'") as caught:
        icsd.CompressParams(strategy="nope")
    assert caught.value.argument == "strategy"
    with pytest.raises(ValueError, match=r"not a usable image|not an image|cannot identify"):
        icsd.compress(b"definitely not an image", icsd.CompressParams())
