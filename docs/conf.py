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
# Every cross-reference must resolve (a renamed or moved function fails the build), except types outside the
# package, which napoleon also turns into references (MXNet, NumPy, builtins, numpydoc's {'a', 'b'} value sets:
# no intersphinx inventories offline), and private modules and classes, which the reference leaves out.
nitpicky = True
nitpick_ignore_regex = [
    ("py:class", r"(?!resnet_gluon\.).*"),
    ("py:.*", r"resnet_gluon(\.\w+)*\._\w+(\.\w+)*"),
    ("py:class", r"resnet_gluon\._core\.dist\.F"),  # the TypeVar of rank_zero_only's signature
]
html_theme = "alabaster"
exclude_patterns = ["_build"]
