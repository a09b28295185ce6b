"""User-editable part of the pipeline: features, preprocessing and trainers."""
