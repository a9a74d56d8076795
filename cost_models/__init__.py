"""Cost models: the accelerator catalog, the fabric, and the one estimator every number comes from."""
