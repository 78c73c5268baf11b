"""Helpers for tests that train: small backbones, and scripts that tests start under
`paddle.distributed.launch` (with PYTHONPATH = repository + tests, see `launching.clean_env`)."""
