"""Write the offline intersphinx inventories ``torch.inv``, ``pyro.inv`` and ``nflows.inv``.

``docs/conf.py`` asks each project's site for its ``objects.inv`` first and falls back on these
files, so that ``sphinx-build -W`` passes without a network (CI reaches package registries
only). They list the public classes and functions of the installed packages under the URLs
of the projects' documentation (nflows has no API site: its entries link to the source on
GitHub). Regenerate after a dependency upgrade: ``python docs/_inventories/generate.py``.
"""

import importlib
import inspect
import os
import pkgutil
import zlib

import nflows
import pyro
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECTS = {  # name -> (package, base URL, modules walked, URL of one object relative to base)
    "torch": (torch, "https://docs.pytorch.org/docs/stable/",
              ["torch", "torch.nn", "torch.optim", "torch.distributions", "torch.utils.data"],
              lambda module, name: (f"distributions.html#{module}.{name}"
                                    if module.startswith("torch.distributions")
                                    else f"generated/{module}.{name}.html#{module}.{name}")),
    "pyro": (pyro, "https://docs.pyro.ai/en/stable/",
             ["pyro", "pyro.distributions", "pyro.distributions.transforms", "pyro.infer",
              "pyro.nn", "pyro.optim", "pyro.poutine"],
             lambda module, name: f"{_pyro_page(module)}.html#{module}.{name}"),
    "nflows": (nflows, "https://github.com/bayesiains/nflows/blob/master/",
               [m.name for m in pkgutil.walk_packages(nflows.__path__, "nflows.")],
               lambda module, name: f"{module.replace('.', '/')}.py"),
}


def _pyro_page(module: str) -> str:
    return {"pyro.infer": "inference_algos", "pyro.optim": "optimization",
            "pyro.poutine": "poutine", "pyro.nn": "nn"}.get(
        module, "distributions" if module.startswith("pyro.distributions") else "primitives")


def entries(modules, url):
    """``(name, role, uri)`` for every public class and function of ``modules``, under the
    module that exports it and under the module that defines it."""
    seen = {}
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except Exception:  # optional back-ends of a dependency
            continue
        for name, obj in vars(module).items():
            if name.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            role = "py:class" if inspect.isclass(obj) else "py:function"
            uri = url(module_name, name)
            for owner in {module_name, getattr(obj, "__module__", module_name)}:
                seen.setdefault(f"{owner}.{name}", (role, uri))
    return sorted((name, role, uri) for name, (role, uri) in seen.items())


def write(path, project, version, rows):
    header = (f"# Sphinx inventory version 2\n# Project: {project}\n# Version: {version}\n"
              "# The remainder of this file is compressed using zlib.\n").encode()
    body = "".join(f"{name} {role} 1 {uri} -\n" for name, role, uri in rows).encode()
    with open(path, "wb") as f:
        f.write(header + zlib.compress(body, 9))


if __name__ == "__main__":
    for project, (package, _, modules, url) in PROJECTS.items():
        rows = entries(modules, url)
        write(os.path.join(HERE, f"{project}.inv"), project, getattr(package, "__version__", ""), rows)
        print(f"{project}.inv: {len(rows)} entries")
