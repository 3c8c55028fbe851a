"""Suite-wide fixtures: the real-cluster kit (``cluster``, ``cluster_factory``), and hypothesis settings."""

from hypothesis import settings

pytest_plugins = ["butte.testing.pytest_plugin"]

# No per-example deadline: CI runs on busy 2-core machines where an example's time says nothing about the code,
# and a property that fails only on timing is noise. Example counts stay as each test sets them.
settings.register_profile("butte", deadline=None)
settings.load_profile("butte")
