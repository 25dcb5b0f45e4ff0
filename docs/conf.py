"""Sphinx configuration: ``sphinx-build -W docs docs/_build`` (the ``docs`` extra)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from rendezvous import __version__

project = "rendezvous"
author = "the rendezvous maintainers"
copyright = "2026, the rendezvous maintainers"
version = release = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
default_role = "py:obj"
suppress_warnings = ["ref.python"]
"""Docstrings name objects in backquotes, some of them alike (two `disconnect`s)."""
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"rendezvous {version}"
