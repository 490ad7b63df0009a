"""Preprocessing for the `recurrent` (Agrawal) example: Agrawal's functions mix salary and commission,
so add the total income; the categorical codes are stored as text so they are not read as numbers."""

import pandas as pd


def preprocess(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["income"] = df["salary"] + df["commission"]
    for column in ("elevel", "car", "zipcode"):
        df[column] = df[column].astype(str)
    return df
