"""A pipeline's state files (``state/*.json``: score trail, concept detectors) belong to one champion; one that
cannot be read is set aside with a line in the pipeline's log, and its state starts afresh."""

from calmops.core.store import read_champion_state, write_champion_state


def test_a_state_file_of_the_champion_is_read_back_and_another_champions_is_not(tmp_path):
    path = tmp_path / "sea" / "state" / "concept.json"
    write_champion_state(path, 3, metric="accuracy", detectors={"adwin": [1, 2]})
    assert read_champion_state(path, 3, metric="accuracy")["detectors"] == {"adwin": [1, 2]}
    assert read_champion_state(path, 4, metric="accuracy") is None  # the next champion starts afresh
    assert read_champion_state(path, 3, metric="rmse") is None


def test_a_state_file_that_cannot_be_read_is_set_aside_and_said_in_the_pipelines_log(tmp_path):
    """A truncated file (or one that holds no JSON object) made every run of the pipeline fail with a bare
    JSONDecodeError that named no file, counted against the breaker, and left the file pending for good."""
    root = tmp_path / "sea"
    path = root / "state" / "concept.json"
    for broken in (b'{"champion_version": 3, "detectors": {"adwin": "trun', b"[1, 2]", b"\xff\xfe not text"):
        write_champion_state(path, 3)
        path.write_bytes(broken)
        assert read_champion_state(path, 3) is None
        assert not path.exists()
    aside = sorted(p.name for p in path.parent.iterdir())
    assert len(aside) == 3 and all(name.startswith("concept.json.unreadable-") for name in aside)
    assert sorted(p.read_bytes()[:6] for p in path.parent.iterdir()) == [b"[1, 2]", b'{"cham', b"\xff\xfe not"]
    logged = (root / "logs" / "pipeline.log").read_text()
    assert logged.count(f"state file {path} could not be read") == 3, logged
    assert "set aside as concept.json.unreadable-" in logged and "its state starts afresh" in logged
    write_champion_state(path, 3, detectors={})  # and the next state is written where it was
    assert read_champion_state(path, 3) == {"champion_version": 3, "detectors": {}}


def test_the_estimators_state_file_that_cannot_be_read_is_set_aside_too(tmp_path):
    """The performance estimator keeps its own file (one state per champion version): damaged, it failed
    every drift check with a bare JSONDecodeError, as the champion's state files did."""
    from calmops.tasks.drift.estimated import _kept

    path = tmp_path / "sea" / "state" / "estimation.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"versions": {"3": {"state": {"kind": "calib')
    assert _kept(path) == {}
    assert not path.exists() and len(list(path.parent.glob("estimation.json.unreadable-*"))) == 1
