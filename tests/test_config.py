import pytest
import yaml
from helpers import REPO, snakemake, workspace

from animote import claps, config
from animote.recordings import load_sheet

SCHEMA = REPO / "config" / "schema.yaml"
DEFAULT = REPO / "config" / "config.yaml"
DEMO = REPO / "config" / "demo.yaml"


def test_default_config_is_valid_and_typed():
    cfg = config.load(DEFAULT, schema=SCHEMA)
    assert claps.ClapParams.from_config(cfg).min_spacing_s > 0
    assert config.ChunkParams.from_config(cfg).length_s == 30
    assert config.VideoParams.from_config(cfg).fps is None


@pytest.mark.parametrize("override, key", [
    ({"claps": {"min_over_floor_db": "loud"}}, "claps.min_over_floor_db"),
    ({"chunks": {"length_s": -5}}, "chunks.length_s"),
    ({"audio": {"sample_rate": 44100}}, "audio.sample_rate"),
    ({"demo": {"styles": {"angry": {"pitch": 1.0}}}}, "demo.styles.angry"),
])
def test_bad_value_names_the_key(tmp_path, override, key):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(override))
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        config.load(DEFAULT, DEMO, p, schema=SCHEMA)


def test_demo_settings_join_the_config_only_for_the_demo():
    """config/demo.yaml's settings go under the config's own ``demo:`` keys when the sheet lists
    the demo video, and nowhere else; the result passes the schema."""
    cfg = config.load(DEFAULT, schema=SCHEMA)
    assert "demo" not in cfg
    assert not config.add_demo_defaults(cfg, ["videos/alice.mp4"], DEMO) and "demo" not in cfg
    cfg["demo"] = {"duration_s": 45, "voices": ["kal"]}  # the user's own, e.g. from --configfile
    assert config.add_demo_defaults(cfg, ["videos/alice.mp4", config.DEMO_VIDEO], DEMO)
    assert cfg["demo"]["duration_s"] == 45 and cfg["demo"]["voices"] == ["kal"]
    assert cfg["demo"]["fps"] == yaml.safe_load(DEMO.read_text())["demo"]["fps"]
    config.validate(cfg, SCHEMA)


def test_clap_detector_internals_are_not_config(tmp_path):
    p = tmp_path / "old.yaml"
    p.write_text(yaml.safe_dump({"claps": {"highpass_hz": 1500}}))
    with pytest.raises(ValueError, match=r"claps\.highpass_hz' is no longer read.*animote\.claps.*HIGHPASS_HZ"):
        config.load(DEFAULT, p, schema=SCHEMA)
    assert claps.ClapParams.from_config(config.load(DEFAULT, schema=SCHEMA)).highpass_hz == claps.HIGHPASS_HZ


def test_unknown_key_is_rejected(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({"chunks": {"lenght_s": 20}}))
    with pytest.raises(ValueError, match="lenght_s"):
        config.load(DEFAULT, p, schema=SCHEMA)


def test_renamed_key_says_what_replaced_it(tmp_path):
    p = tmp_path / "old.yaml"
    p.write_text(yaml.safe_dump({"claps": {"threshold_dbfs": -12, "min_onset_ratio": 4}}))
    with pytest.raises(ValueError, match=r"claps\.threshold_dbfs' is no longer read.*min_over_floor_db") as err:
        config.load(DEFAULT, p, schema=SCHEMA)
    assert "MIN_RISE_DB" in str(err.value)
    p.write_text(yaml.safe_dump({"resources": {"neutral_mesh": {"mem_mb": 900}}}))  # a rule merged into another
    with pytest.raises(ValueError, match=r"resources\.neutral_mesh' is no longer read.*resources\.align_mesh"):
        config.load(DEFAULT, p, schema=SCHEMA)


def test_workflow_validates_config_before_any_rule(tmp_path):
    wd = workspace(tmp_path, {"claps": {"threshold_dbfs": 6}})  # a key of an older animote
    proc = snakemake(wd, "-n", check=False)
    assert proc.returncode != 0
    assert "claps.threshold_dbfs' is no longer read" in proc.stdout + proc.stderr
    assert not (wd / "results").exists()


def _sheet(tmp_path, text):
    p = tmp_path / "rec.tsv"
    p.write_text(text)
    return p


def test_sheet_loads_with_optional_neutral(tmp_path):
    df = load_sheet(_sheet(tmp_path, "id\tpath\nalice_01\ta.mp4\nbob-2\tb.mov\n"))
    assert list(df.index) == ["alice_01", "bob-2"]
    assert (df.neutral == "").all()


@pytest.mark.parametrize("text, message", [
    ("id\tpath\nmy rec\ta.mp4\n", "'my rec' is not allowed"),
    ("id\tpath\na/b\ta.mp4\n", "'a/b' is not allowed"),
    ("id\tpath\nx\ta.mp4\nx\tb.mp4\n", "duplicate id"),
    ("name\tpath\nx\ta.mp4\n", "missing column"),
    ("id\tpath\nx\t\n", "has no path"),
    ("id\tpath\n", "lists no recordings"),
])
def test_sheet_errors(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_sheet(_sheet(tmp_path, text))


def test_gpu_requests_follow_the_device_and_the_machine(monkeypatch):
    from animote.config import gpu_visible, needs_gpu

    assert [needs_gpu(d, True) for d in ("cpu", "cuda", "auto")] == [0, 1, 1]
    # auto on a machine without a GPU runs on the CPU: it must not queue for the one "GPU" slot
    assert [needs_gpu(d, False) for d in ("cpu", "cuda", "auto")] == [0, 1, 0]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_visible() is False
