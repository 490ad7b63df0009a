"""Bad input is quarantined with a reason, bytes unchanged, and nothing else changes."""

import json

import pandas as pd
import pytest

from calmops.core import registry
from calmops.core.store import ledger, pipeline_paths, read_spec
from tests.conftest import sea_frame, write_csv
from tests.flows.helpers import digest, incoming, run, versions

pytestmark = pytest.mark.integration


def _bad_files(folder):
    """(name, bytes, words the reason must contain) for each kind of bad input."""
    good = sea_frame(200, 8, seed=3)
    wrong_type = good.copy().astype({"x2": object})
    wrong_type.loc[5, "x2"] = "abc"
    return [
        ("empty.csv", b"", "empty"),
        ("header.csv", b"x1,x2,x3,y\n", "header only"),
        ("no-target.csv", good.drop(columns=["y"]).to_csv(index=False).encode(), "target column 'y' is missing"),
        ("garbage.csv", bytes(range(256)) * 4, "unknown format"),
        ("wrong-type.csv", wrong_type.to_csv(index=False).encode(), "column 'x2' should be numeric"),
        ("missing-feature.csv", good.drop(columns=["x3"]).to_csv(index=False).encode(), "missing: x3"),
        ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(200), "unknown format"),
        ("ragged.csv", b"x1,x2,x3,y\n1,2,3,0\n1,2\n4,5,6,7,8,9\n", "cannot be parsed"),
    ]


def test_each_bad_file_is_quarantined_with_its_reason_and_nothing_changes(prefect_server, stream_spec):
    folder = incoming("sea")
    run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "good.csv"))
    paths = pipeline_paths(read_spec("sea"))
    before_versions, before_champion = versions("sea"), registry.alias_version("sea", "champion")
    before_history = sorted(paths.history.iterdir())
    for name, content, words in _bad_files(folder):
        path = folder / name
        path.write_bytes(content)
        sha = digest(path)
        out = run("sea", path)
        assert out["decision"] == "rejected_input", (name, out)
        assert words in out["reason"], (name, out["reason"])
        kept = paths.quarantine / name
        assert kept.read_bytes() == content, name  # original bytes, unchanged
        sidecar = json.loads((paths.quarantine / f"{name}.reason.json").read_text())
        assert sidecar["reason"] == out["reason"] and sidecar["sha256"] == sha
        assert not path.exists()
    assert versions("sea") == before_versions
    assert registry.alias_version("sea", "champion") == before_champion
    assert sorted(paths.history.iterdir()) == before_history
    # bad data does not count against the breaker by default
    from calmops.core.breaker import read_breaker

    assert read_breaker("sea").state == "closed" and read_breaker("sea").consecutive_failures == 0
    rejected = [e for e in ledger(paths).entries() if e["decision"] == "rejected_input"]
    assert len(rejected) == len(_bad_files(folder))


def test_format_not_accepted_by_the_pipeline(prefect_server, stream_spec):
    from tests.flows.helpers import update_spec

    update_spec("sea", formats=["parquet"])
    out = run("sea", write_csv(sea_frame(200, 8, seed=1), incoming("sea"), "a.csv"))
    assert out["decision"] == "rejected_input" and "format 'csv' is not accepted" in out["reason"]


def test_new_column_is_a_signal_not_an_error(prefect_server, stream_spec):
    folder = incoming("sea")
    run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))
    extra = sea_frame(500, 8, seed=2).assign(extra=1.0)
    out = run("sea", write_csv(extra, folder, "b.csv"))
    assert out["decision"] in ("no_drift", "retrain_promoted", "retrain_rejected")
    assert pd.read_csv(out["predictions_file"]).shape[0] == 500
