import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

# Tests share a 2-core machine: one intra-op thread keeps them from fighting each other.
torch.set_num_threads(int(os.environ.get("DERAIN_TEST_THREADS", "1")))


def pytest_addoption(parser):
    parser.addoption("--torch-device", default="cpu", help="cpu | cuda: device for model tests")


@pytest.fixture(scope="session")
def device(request):
    name = request.config.getoption("--torch-device")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    return torch.device(name)
