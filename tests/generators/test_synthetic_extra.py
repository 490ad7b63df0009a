"""Incremental drift on Hyperplane: the concept moves steadily inside the window only."""

from sklearn.linear_model import LogisticRegression

from calmops.generators import DriftSpec, synthetic


def _accuracy_of_first_concept(frame, rows):
    first = frame.iloc[:2000]
    model = LogisticRegression(max_iter=1000).fit(first.drop(columns="y"), first["y"])
    part = frame.iloc[rows]
    return model.score(part.drop(columns="y"), part["y"])


def test_hyperplane_incremental_moves_the_concept_inside_the_window():
    moved = synthetic("hyperplane", 8000, drift=DriftSpec(kind="incremental", position=5000, width=4000), seed=3)
    still = synthetic("hyperplane", 8000, seed=3)
    before, after = slice(2000, 3000), slice(7000, 8000)  # the window is [3000, 7000)
    assert _accuracy_of_first_concept(moved, before) > 0.85
    assert _accuracy_of_first_concept(moved, after) < _accuracy_of_first_concept(moved, before) - 0.1
    assert _accuracy_of_first_concept(still, after) > 0.85  # without drift the first concept still holds
