"""TFX Trainer `run_fn` modules, one per framework."""
