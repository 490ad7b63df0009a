"""Preprocessing for the `gradual` (SEA) example: SEA's concepts are thresholds on x0 + x1, so give
the model that sum directly (x2 is pure noise in SEA and is kept only to show it stays irrelevant)."""

import pandas as pd


def preprocess(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["x0_plus_x1"] = df["x0"] + df["x1"]
    return df
