import importlib.util
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ML100K = Path(os.environ.get("NASP_ML100K", ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"))

# tiny models: one thread is fastest and immune to oversubscription on shared CI machines
torch.set_num_threads(1)
# CliRunner mixes stderr into result.output, which tests parse as JSON: no per-epoch log lines
# (tests of the default output unset it)
os.environ.setdefault("NASP_QUIET", "1")


def load_example(name: str):
    """Import ``examples/<name>.py`` (examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def feature_transform():
    return load_example("feature_transform")


@pytest.fixture(scope="session")
def ml100k_path() -> Path:
    if not ML100K.exists():
        pytest.skip(f"MovieLens-100K not found at {ML100K}")
    return ML100K
