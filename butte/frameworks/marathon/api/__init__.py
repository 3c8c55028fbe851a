"""Marathon's v2 REST API over the :class:`~butte.frameworks.marathon.control.MarathonControl` port."""

from butte.frameworks.marathon.api.app import make_app

__all__ = ["make_app"]
