"""The kind table is the one place a kind is described: the flows, prefect.yaml and the spec agree with it."""

from pathlib import Path

import pytest
import yaml

from calmops.core.kinds import KINDS
from calmops.core.names import kind_tag

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list(KINDS))
def test_each_kind_has_its_flow_under_its_name(name):
    from calmops.flows import flow_for

    assert flow_for(name).name == KINDS[name].flow_name


def test_prefect_yaml_has_one_deployment_per_kind_with_its_flow_and_tag():
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    found = {d["name"]: d for d in config["deployments"] if d["name"] in KINDS}
    assert set(found) == set(KINDS)
    for name, kind in KINDS.items():
        assert found[name]["entrypoint"] == kind.entrypoint
        assert kind_tag(name) in found[name]["tags"]
        assert found[name]["triggers"][0]["match"]["calmops.pipeline.kind"] == name


def test_a_kind_that_needs_a_block_column_is_refused_without_one_and_ipip_gets_its_model():
    from calmops.core.store import spec_from_dict

    for name, kind in KINDS.items():
        spec = {"name": "k", "kind": name, "target": "y"}
        if kind.needs_block_column:
            with pytest.raises(ValueError, match="'block_column' is required"):
                spec_from_dict(spec)
            spec["block_column"] = "site"
        built = spec_from_dict(spec)
        if kind.default_model:
            assert built.model.class_ == kind.default_model


def test_the_block_column_is_a_feature_only_where_the_kind_says_so():
    from calmops.core.features import feature_columns
    from calmops.core.store import spec_from_dict

    for name, kind in KINDS.items():
        spec = spec_from_dict({"name": "k", "kind": name, "target": "y", "block_column": "site"})
        assert ("site" in feature_columns(spec, ["site", "x", "y"])) == kind.block_column_is_feature
