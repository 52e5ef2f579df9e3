# pytest configuration, as drgn-tools does it: --vmcore NAME runs the
# per-sample tests (test_samples, test_reference_walk, test_dumpfile) on one
# sample of the vmcore directory, --vmcore-dir DIR uses another
# directory of samples (each DIR/NAME/{vmcore, manifest.json}); the `prog`
# fixture opens that sample once for the whole session.
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import samplelib  # noqa: E402

#: The sample the session-wide `prog` fixture opens by default.
DEFAULT_SAMPLE = "6.1-4k"


def pytest_addoption(parser):
    parser.addoption(
        "--vmcore",
        metavar="NAME",
        help="run the sample tests on this sample only (and open it for `prog`)",
    )
    parser.addoption(
        "--vmcore-dir",
        metavar="DIR",
        help="directory of samples (default: vmcore-samples/ of the checkout)",
    )


def pytest_configure(config):
    directory = config.getoption("vmcore_dir")
    if directory:
        samplelib.SAMPLES = os.path.abspath(directory)
    name = config.getoption("vmcore")
    if name:
        samplelib.ONLY = name


@pytest.fixture(scope="session")
def sample_name():
    """The sample `prog` is: --vmcore, else 6.1-4k."""
    name = samplelib.ONLY or DEFAULT_SAMPLE
    if name not in samplelib.sample_names():
        pytest.skip(f"sample {name} is not in {samplelib.SAMPLES}")
    return name


@pytest.fixture(scope="session")
def prog(sample_name):
    """One drgn Program of the sample, with its debug info, for the session."""
    return samplelib.open_sample(sample_name)
