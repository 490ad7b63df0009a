import pytest

from calmops.core import registry
from calmops.core.store import pipeline_paths
from calmops.flows.stream import stream_flow
from tests.conftest import sea_frame, write_csv

pytestmark = pytest.mark.integration


def test_first_file_trains_and_second_is_no_drift(prefect_server, stream_spec):
    paths = pipeline_paths(stream_spec)
    f1 = write_csv(sea_frame(1000, 8, seed=1), paths.incoming, "b01.csv")
    out = stream_flow(pipeline="sea", path=str(f1))
    assert out["decision"] == "train", out
    assert registry.alias_version("sea", "champion") == 1
    f2 = write_csv(sea_frame(1000, 8, seed=2), paths.incoming, "b02.csv")
    out = stream_flow(pipeline="sea", path=str(f2))
    assert out["decision"] == "no_drift", out
