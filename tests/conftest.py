"""Suite-wide fixtures: the real-cluster kit (``cluster``, ``cluster_factory``)."""

pytest_plugins = ["butte.testing.pytest_plugin"]
