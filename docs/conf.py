"""Sphinx configuration of the flowvae documentation.

Build (what ``tests/test_docs.py`` runs; warnings are errors):

    sphinx-build -W -b html docs docs/_build/html
    sphinx-build -W -b doctest docs docs/_build/doctest

Pages are Markdown (MyST); the API reference is autodoc with napoleon (Google-style docstrings).
Nothing here reaches the network (no intersphinx): the build works offline.
"""

import flowvae

project = "flowvae"
author = "flowvae developers"
copyright = "flowvae developers"
version = release = flowvae.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]

# MyST: the Markdown pages (papers, benchmarks, distributed) are included as they are.
myst_heading_anchors = 3

# autodoc + napoleon: Google-style docstrings, members in source order.
autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
    "show-inheritance": True,
}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# doctest builder: runs the ```{doctest} blocks of the guide pages. Docstring examples are run
# by pytest (--doctest-modules in setup.cfg), so they are not run a second time here.
doctest_test_doctest_blocks = ""
doctest_global_setup = """
import pyro
import torch

pyro.set_rng_seed(0)
pyro.clear_param_store()
pyro.enable_validation(True)
"""

html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"flowvae {release}"
html_theme_options = {
    "description": "Normalizing-flow components for variational autoencoders",
    "fixed_sidebar": True,
}


def _keep_public_module_names(app, what, name, obj, skip, options):
    """Document every public function and class of a module, with or without a docstring.

    autodoc skips undocumented members (``flowvae.train.read_checkpoint``, say); the API
    reference lists every public name. Imported names of modules without ``__all__`` are still
    dropped by autodoc's own module check, and autodoc cannot document module-level constants
    that have no docstring: the API pages list those with ``py:data``.
    """
    if what == "module" and skip and not name.startswith("_"):
        return False
    return None


def setup(app):
    app.connect("autodoc-skip-member", _keep_public_module_names)
