"""Serving: ``prnn serve`` and ``create_app``, an HTTP service over any saved prnn model.

Modules: ``sessions`` (the bounded store of live sessions), ``engine`` (a loaded model as the
service uses it), ``catalogue`` (titles and photos for the demo page), ``example`` (the model
served when none is given), ``app`` (the FastAPI application).
"""

from prnn.serving.app import ServeOptions, create_app

__all__ = ["ServeOptions", "create_app"]
