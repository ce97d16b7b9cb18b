import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("GLOG_minloglevel", "2")

from helpers import SHORT_DEMO, snakemake, workspace  # noqa: E402


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The workflow run once on a short demo through chunking; tests read its results."""
    wd = workspace(tmp_path_factory.mktemp("demo_run"), SHORT_DEMO)
    snakemake(wd)
    return wd


@pytest.fixture(scope="session")
def clap_params():
    from animote import config
    from helpers import REPO

    cfg = config.load(REPO / "config" / "config.yaml", schema=REPO / "config" / "schema.yaml")
    return config.ClapParams.from_config(cfg)
