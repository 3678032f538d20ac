import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

# Tests run one at a time, so each may use the machine's cores (CI has 2). The apps that
# browser tests start run in their own processes while the test waits on the browser.
torch.set_num_threads(int(os.environ.get("DERAIN_TEST_THREADS", min(4, os.cpu_count() or 1))))


@pytest.fixture(autouse=True)
def _keep_threads():
    """Training runs set torch's thread count for their process: restore it after each test."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def pytest_addoption(parser):
    parser.addoption("--torch-device", default="cpu", help="cpu | cuda: device for model tests")


@pytest.fixture(scope="session")
def device(request):
    name = request.config.getoption("--torch-device")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    return torch.device(name)
