"""Taxi "big tipper" features shared by Transform and every trainer.

Raw feature names are grouped by how `preprocessing.preprocessing_fn` treats
them; `MODEL_FEATURES` fixes the column order of the float32 matrix every model
consumes.
"""

from typing import List

# Numeric features standardised with a z-score (missing values -> the mean).
DENSE_FLOAT_FEATURE_KEYS = ["trip_miles", "fare", "trip_seconds"]

# Numeric features replaced by their quantile bucket (missing values -> -1).
BUCKET_FEATURE_KEYS = [
    "pickup_latitude",
    "pickup_longitude",
    "dropoff_latitude",
    "dropoff_longitude",
]
BUCKET_FEATURE_BUCKET_COUNT = 10

# Integer features used as plain numbers (missing values -> 0).
CATEGORICAL_FEATURE_KEYS = ["trip_start_hour", "trip_start_day", "trip_start_month"]

# String features mapped to vocabulary ids (missing values -> '').
VOCAB_FEATURE_KEYS = ["payment_type", "company"]
VOCAB_SIZE = 1000
OOV_SIZE = 1

LABEL_KEY = "tips"
FARE_KEY = "fare"

# The transformed label: 1 when the tip is more than 20% of the fare.
TRANSFORMED_LABEL_KEY = "big_tipper"


def transformed_name(key: str) -> str:
    """Returns the name of the transformed feature for a raw feature."""
    return key + "_xf"


def transformed_names(keys: List[str]) -> List[str]:
    """Returns the transformed names of several raw features."""
    return [transformed_name(key) for key in keys]


# Column i of every model's input matrix is the transformed MODEL_FEATURES[i].
MODEL_FEATURES = transformed_names(
    DENSE_FLOAT_FEATURE_KEYS + BUCKET_FEATURE_KEYS + CATEGORICAL_FEATURE_KEYS + VOCAB_FEATURE_KEYS
)
