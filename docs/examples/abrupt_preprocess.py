"""Preprocessing for the `abrupt` (STAGGER) example: normalise the spelling of the three categorical
attributes, so a file written by hand ("Red ", "SMALL") means the same as a generated one."""

import pandas as pd

CATEGORICAL = ("size", "color", "shape")


def preprocess(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for column in CATEGORICAL:
        if column in df.columns:
            df[column] = df[column].astype(str).str.strip().str.lower()
    return df
