from __future__ import annotations

import flask_lockout

project = "Flask-Lockout"
author = "The Flask-Lockout contributors"
copyright = "2026, The Flask-Lockout contributors"
release = flask_lockout.__version__

extensions = ["sphinx.ext.autodoc"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True
html_theme = "furo"
html_title = f"Flask-Lockout {release}"
exclude_patterns = ["_build"]
