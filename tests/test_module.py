"""animote used as a Snakemake module from a user's own workflow folder: the catalog's way to
deploy a workflow (``module animote: snakefile: ...``, ``use rule * from animote``)."""

import subprocess
import sys
from pathlib import Path

import yaml
from helpers import REPO, scheduled

BIN = Path(sys.executable).parent

USER_SNAKEFILE = """\
configfile: "config/config.yaml"


module animote:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from animote as animote_*
"""


def _user_folder(tmp_path: Path) -> Path:
    wd = tmp_path / "my-study"
    (wd / "config").mkdir(parents=True)
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["demo"] = {"duration_s": 12, "width": 128, "height": 128, "n_claps": 2}  # over config/demo.yaml
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (wd / "config" / "recordings.tsv").write_text("id\tpath\tneutral\ndemo\tresults/demo/demo.mp4\t\n")
    (wd / "Snakefile").write_text(USER_SNAKEFILE.format(snakefile=REPO / "workflow" / "Snakefile"))
    return wd


def _snakemake(wd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "snakemake"), "--cores", "2", *args], cwd=wd, capture_output=True, text=True,
                          timeout=600)


def test_the_workflow_deploys_as_a_module_and_its_renamed_rules_run(tmp_path):
    """A dry run plans every stage under the module's rule names; a renamed rule still runs its
    stage's function (each rule names it), here the demo recording."""
    wd = _user_folder(tmp_path)
    dry = _snakemake(wd, "-n")
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    jobs = scheduled(dry)
    assert {"animote_probe", "animote_face_mesh", "animote_dataset", "animote_train", "animote_sweep_report",
            "animote_all"} <= set(jobs), jobs
    assert jobs["animote_train"] == len(yaml.safe_load((REPO / "config" / "config.yaml").read_text())
                                        ["sweep"]["experiments"])
    run = _snakemake(wd, "results/demo/demo.mp4")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    truth = (wd / "results/demo/truth.tsv").read_text().splitlines()
    assert len(truth) - 1 >= 12 * 30  # a frame per row, at the demo's 30 fps, the user's 12 s
