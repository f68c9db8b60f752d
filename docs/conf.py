"""Sphinx configuration of resnet_gluon's API reference: ``make docs`` (warnings are errors)."""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "resnet_gluon"
author = "resnet_gluon developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.intersphinx", "sphinx.ext.viewcode"]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Horovod, DALI and OpenVINO are imported where used, so the modules import without them; nothing to mock.
nitpicky = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
