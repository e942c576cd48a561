"""Test session setup: offline Hugging Face libraries and a throw-away HF_HOME (set before transformers loads)."""

import atexit
import os
import shutil
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_EVALUATE_OFFLINE"] = "1"
os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
_hf_home = tempfile.mkdtemp(prefix="mesa-lm-hf-home-")
atexit.register(shutil.rmtree, _hf_home, ignore_errors=True)  # with the kernels this session compiled into it
os.environ["HF_HOME"] = _hf_home
os.environ["HF_MODULES_CACHE"] = os.path.join(_hf_home, "modules")
os.environ["MESA_LM_CACHE"] = os.path.join(_hf_home, "mesa_lm_cache")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
