"""The examples on their own scenarios, file by file as ``calmops run`` decides them.

docs/examples/abrupt.yaml on its own scenario (``calmops generate scenario abrupt``), file by file as
``calmops run`` decides them: STAGGER's concept switches twice, at files 4 and 8 of 10. Each STAGGER concept is a
boolean function of three categorical attributes, which the example's model learns without an error from one
file, so a pipeline that adapts serves the files after each switch's first one almost perfectly; one that never
promotes (the example used ``retrain.mode: full``, whose challengers learn the old concept's rows again and
failed the example's accuracy threshold) serves them at about a third."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.flows.helpers import run

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def test_the_abrupt_example_adapts_to_each_concept_switch_of_its_scenario(prefect_server, calmops_home, tmp_path):
    from calmops.core.spec import load_spec, resolve_paths
    from calmops.core.store import save_spec
    from calmops.generators import run_scenario

    save_spec(resolve_paths(load_spec(EXAMPLES / "abrupt.yaml"), EXAMPLES), create=True)  # as `calmops create`
    files = run_scenario("abrupt", tmp_path / "data", seed=0, report=False).files
    switches = [4, 8]  # 1-based: the first file of each new concept (positions at a third and two thirds of 10)
    served = {}
    for i, path in enumerate(files, start=1):
        outcome = run("stagger-abrupt", path)
        assert outcome["decision"] not in ("failed", "rejected_input"), outcome
        served[i] = (outcome.get("metrics") or {}).get("champion", {}).get("accuracy")
    assert len(files) == 10
    for switch in switches:
        assert served[switch] < 0.7, served  # the switch itself is served by the old concept's model
        after = [served[i] for i in range(switch + 1, switch + 3)]
        assert min(after) >= 0.9, (switch, served)  # ... and the files after it by a model of the new one


def test_the_gradual_example_ends_serving_its_scenarios_last_concept(prefect_server, calmops_home, tmp_path):
    """docs/examples/gradual.yaml on its own scenario (``calmops generate scenario gradual``): SEA's threshold moves
    three times, each over one file's worth of rows; the last ends inside file 8 of 10. A pipeline that adapts
    serves the last file with a model learnt on file 9, all of the last concept, near perfectly; the example used
    ``retrain.mode: full``, whose challengers relearnt every old concept's rows, never passed the paired test after
    file 3, and served the last file at 0.91."""
    from calmops.core.spec import load_spec, resolve_paths
    from calmops.core.store import save_spec
    from calmops.generators import run_scenario

    save_spec(resolve_paths(load_spec(EXAMPLES / "gradual.yaml"), EXAMPLES), create=True)  # as `calmops create`
    files = run_scenario("gradual", tmp_path / "data", seed=0, report=False).files
    assert len(files) == 10
    served = {}
    for i, path in enumerate(files, start=1):
        outcome = run("sea-gradual", path)
        assert outcome["decision"] not in ("failed", "rejected_input"), outcome
        served[i] = (outcome.get("metrics") or {}).get("champion", {}).get("accuracy")
    assert served[10] >= 0.95, served
