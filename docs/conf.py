"""Sphinx configuration of the flowvae documentation.

Build (what ``tests/test_docs.py`` runs; warnings are errors):

    sphinx-build -W -b html docs docs/_build/html
    sphinx-build -W -b doctest docs docs/_build/doctest

Pages are Markdown (MyST, maths in ``$...$``); the API reference is autodoc with napoleon
(Google-style docstrings) and autosummary tables; the CLI's flags come from its argparse parser
(sphinx-argparse). Maths is typeset by a MathJax copied from the ``sphinx-mathjax-offline``
package into ``_static/mathjax`` (no CDN: the pages render offline); ``docs/tutorials`` are
notebooks written as MyST Markdown that myst-nb executes at every build. Intersphinx links torch, Pyro and nflows names: each project's inventory is
fetched from its site when the network is there, else read from ``docs/_inventories`` (written
by ``docs/_inventories/generate.py``), so the build also passes offline.
"""

import importlib
import os

import flowvae

project = "flowvae"
author = "flowvae developers"
copyright = "flowvae developers"
version = release = flowvae.__version__

extensions = [
    "myst_nb",  # MyST Markdown (myst-parser) and notebooks written in it, executed at build
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax's files in _static/mathjax: maths renders offline
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
    "sphinxarg.ext",
]

source_suffix = {".md": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]

# MyST: the Markdown pages (papers, benchmarks, distributed) are included as they are.
myst_heading_anchors = 3
smartquotes = False  # "--flag" in docstrings and argparse help must stay copyable, not "–flag"
myst_enable_extensions = ["dollarmath"]

# the local copy that sphinx-mathjax-offline installs (it also sets this; said here to be seen)
mathjax_path = "mathjax/tex-chtml.js"

# myst-nb: a page with a ``kernelspec`` in its front matter is a notebook, executed at every
# build (it is written without outputs); an error in a cell fails the build
nb_execution_mode = "force"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True

_INVENTORIES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_inventories")
intersphinx_mapping = {  # the site's inventory first, the offline copy when it cannot be had
    name: (url, (None, os.path.join(_INVENTORIES, f"{name}.inv")))
    for name, url in (("torch", "https://docs.pytorch.org/docs/stable/"),
                      ("pyro", "https://docs.pyro.ai/en/stable/"),
                      ("nflows", "https://github.com/bayesiains/nflows/blob/master/"))
}
intersphinx_timeout = 5

# sphinx-copybutton: copy commands without their prompts and comments' output
copybutton_prompt_text = r"\$ |>>> |\.\.\. "
copybutton_prompt_is_regexp = True

# autodoc + napoleon: Google-style docstrings, members in source order.
autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
    "show-inheritance": True,
}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autoclass_content = "class"
autodoc_inherit_docstrings = False  # not torch's "Define the computation performed at ..."
autosummary_generate = False  # tables only; the entries are the automodule ones below them
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

html_theme = "furo"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_title = f"flowvae {release}"
pygments_style = "friendly"


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


def _autosummary_tables(app, docname, source):
    """Replace a line ``% autosummary: MODULE`` of an API page by an autosummary table of the
    module's ``__all__``, so that the table lists every public name without a copy of the list."""
    lines = source[0].splitlines()
    for i, line in enumerate(lines):
        if line.startswith("% autosummary: "):
            module_name = line.split(":", 1)[1].strip()
            module = importlib.import_module(module_name)
            names = getattr(module, "__all__", None) or [  # a module without __all__: its own
                n for n, obj in vars(module).items() if not n.startswith("_") and callable(obj)
                and getattr(obj, "__module__", None) == module_name]
            # classes and functions; constants (dicts, tuples) have the docs of their type
            names = [n for n in names if callable(getattr(module, n))]
            lines[i] = "\n".join(["```{eval-rst}", f".. currentmodule:: {module_name}", "",
                                  ".. autosummary::", "   :nosignatures:", "",
                                  *(f"   {n}" for n in names if n != "__version__"), "```"])
    source[0] = "\n".join(lines) + "\n"


def setup(app):
    app.connect("autodoc-skip-member", _keep_public_module_names)
    app.connect("source-read", _autosummary_tables)
