"""The documentation: Sphinx builds it without a warning, its snippets run, its commands run.

* ``sphinx-build -W -b html docs OUT`` (MyST pages, autodoc API reference; warnings are errors);
  every public name of the API modules gets an entry and every Markdown page is in the site.
* ``sphinx-build -W -b doctest docs OUT``: the ``{doctest}`` / ``{testcode}`` blocks of the guide
  pages (docstring examples are run by pytest's ``--doctest-modules`` instead).
* Every shell command that the guide pages show is listed below with what runs it; the
  quickstart's commands and the CPU ``torchrun`` command of docs/distributed.md run here, as
  written, with tiny sizes appended.
"""

import importlib.util
import os
import re
import runpy
import shlex
import socket
import subprocess
import sys
from glob import glob

import pytest
import torch

import flowvae
from flowvae.cli import main as flowvae_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
GUIDE_PAGES = sorted(glob(os.path.join(DOCS, "guide", "*.md")))

needs_sphinx = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("sphinx", "myst_nb")),
    reason="sphinx and myst-nb are not installed (pip install -e '.[test,docs]')",
)

API_PAGES = {  # module -> its page under docs/api/
    "flowvae.transforms": "transforms",
    "flowvae.distributions": "distributions",
    "flowvae.models": "models",
    "flowvae.parts": "parts",
    "flowvae.infer": "infer",
    "flowvae.data": "data",
    "flowvae.train": "train",
    "flowvae.nn": "nn",
}

TINY_TRAIN = ["--epochs", "1", "--max-steps-per-epoch", "2", "--latent-dim", "2", "--hidden", "4",
              "--flow-channels", "4"]
TINY_CLI_TRAIN = [*TINY_TRAIN, "--num-blocks", "1", "--batch-size", "16", "--no-progress",
                  "--no-download", "--device", "cpu"]
RUN_HERE = {  # command shown in docs/guide/quickstart.md -> flags appended to keep it tiny
    "python examples/vapnev.py": TINY_TRAIN,
    "flowvae train --model vapnev --dataset digits --out runs/vapnev-cli": TINY_CLI_TRAIN,
    "flowvae evaluate runs/vapnev-cli/checkpoint.pt --iwae 100":
        ["--num-images", "16", "--device", "cpu"],
    "flowvae sample runs/vapnev-cli/checkpoint.pt --n 64 --temperature 0.8 -o samples.png":
        ["--device", "cpu"],
}
DISTRIBUTED_CPU = ("FLOWVAE_DATA=/data/flowvae torchrun --nproc_per_node 2 -m flowvae.cli train "
                   "--model vapnev --dataset mnist --epochs 1 --out runs/vapnev-ddp")
"""The CPU command of docs/distributed.md (its GPU commands need GPUs, which CI has not)."""
COVERED_ELSEWHERE = {  # command shown in the guide pages -> what runs it
    "python3 -m venv .venv": ".ci/run (fresh venv)",
    ". .venv/bin/activate": ".ci/run",
    'pip install -e ".[test,docs]"': ".ci/run",
    "python -m pytest": ".ci/run",
    "export FLOWVAE_DATA=/data/flowvae": "the resolve_root doctest of docs/guide/installation.md",
    "tensorboard --logdir runs": "tests/test_tensorboard.py (the event files, read back)",
}


def sphinx(builder, out, doctrees):
    """Run ``sphinx-build -W -b BUILDER docs OUT`` in a subprocess."""
    # the snippets' models are tiny: one thread avoids oversubscribing a shared CI machine
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder,
               "-d", str(doctrees), DOCS, str(out)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def doctrees(tmp_path_factory):
    return tmp_path_factory.mktemp("doctrees")


@pytest.fixture(scope="module")
def html(tmp_path_factory, doctrees):
    out = tmp_path_factory.mktemp("html")
    done = sphinx("html", out, doctrees)
    assert done.returncode == 0, f"sphinx-build -W -b html failed:\n{done.stdout}{done.stderr}"
    return out


@needs_sphinx
def test_html_build_has_no_warnings_and_every_page(html):
    pages = glob(os.path.join(DOCS, "**", "*.md"), recursive=True)
    assert any(os.sep + "papers" + os.sep in p for p in pages)
    for page in pages:
        name = os.path.relpath(page, DOCS)[: -len(".md")]
        assert (html / f"{name}.html").is_file(), f"{name}.md is not in the site"


REMOTE_SCRIPT = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']?(?:[a-z][a-z0-9+.-]*:)?//""",
                           re.I)
"""A ``<script>`` that loads from another host (``https://``, ``//cdn...``): offline, it fails."""


def test_remote_scripts_are_found():
    assert REMOTE_SCRIPT.search('<script defer src="https://cdn.example/mathjax/tex.js">')
    assert REMOTE_SCRIPT.search("<script src='//cdn.example/x.js'></script>")
    assert not REMOTE_SCRIPT.search('<script src="../_static/mathjax/tex-chtml.js">')
    assert not REMOTE_SCRIPT.search('<a href="https://pyro.ai">Pyro</a>')


@needs_sphinx
def test_built_pages_load_no_remote_script_and_a_local_mathjax(html):
    remote = {str(page.relative_to(html)): REMOTE_SCRIPT.findall(page.read_text())
              for page in html.glob("**/*.html")}
    assert not {page: hits for page, hits in remote.items() if hits}, "remote scripts"
    quickstart = html / "guide" / "quickstart.html"
    mathjax = re.search(r'<script[^>]*src="([^"]*mathjax[^"]*)"', quickstart.read_text())
    assert mathjax, "a page with maths loads no MathJax"
    assert (quickstart.parent / mathjax.group(1)).resolve().stat().st_size > 10_000


@needs_sphinx
def test_notebook_tutorial_is_executed_with_its_figures_on_the_page(html):
    page = (html / "tutorials" / "vapnev_digits.html").read_text()
    figures = re.findall(r'<img[^>]*src="([^"]+\.png)"', page)
    assert len(figures) >= 3, "the rate-distortion plot, reconstructions and samples"
    for figure in figures:
        assert (html / "tutorials" / figure).resolve().stat().st_size > 2000, figure
    tables = re.findall(r"^epoch +test -ELBO.*?</pre>", page, re.S | re.M)  # output, not code
    assert tables, "the training cell's printed table is not on the page"
    epochs = [line.split()[0] for line in tables[-1].splitlines()[1:]
              if line.split() and line.split()[0].isdigit()]
    assert epochs == [str(e) for e in range(1, len(epochs) + 1)] and len(epochs) >= 5


@needs_sphinx
def test_api_reference_lists_every_public_name(html):
    missing = []
    for module_name, page in API_PAGES.items():
        text = (html / "api" / f"{page}.html").read_text()
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", None)
        if names is None:  # a module without __all__: what it defines
            names = [n for n, obj in vars(module).items() if not n.startswith("_")
                     and getattr(obj, "__module__", None) == module_name]
        missing += [f"{module_name}.{n} (docs/api/{page}.md)" for n in names
                    if f'id="{module_name}.{n}"' not in text]
    reference = "".join(p.read_text() for p in (html / "api").glob("*.html"))
    missing += [f"flowvae.{n}" for n in flowvae.__all__ if n != "__version__"
                and not re.search(rf'id="flowvae\.\w+\.{n}"', reference)]
    assert not missing, f"public names without an API entry: {missing}"


@needs_sphinx
def test_guide_snippets_pass_doctest(html, doctrees, tmp_path):
    done = sphinx("doctest", tmp_path, doctrees)
    report = tmp_path / "output.txt"
    details = report.read_text() if report.exists() else ""
    assert done.returncode == 0, f"doctest of the docs failed:\n{done.stderr}\n{details}"
    assert "0 failures in tests" in details


TABLE_SPAN = re.compile(r"(`+)(.+?)\1|\$(.+?)\$")
"""A code span or a $...$ maths span."""
COMMAND = re.compile(r"(?:^|\s)(?:flowvae (?:train|evaluate|sample)|python3? (?:-m |examples/)|"
                     r"pip install|torchrun --)|\s\u2013[a-z]")
"""A shell command, or a flag whose "--" typography made an en dash, in running text."""


def broken_table_cells(path):
    """``line: span`` for each code or maths span in a Markdown table holding an unescaped ``|``,
    which ends the cell there (the rest of the row is lost)."""
    broken = []
    for number, line in enumerate(open(path), 1):
        if line.lstrip().startswith("|"):
            for match in TABLE_SPAN.finditer(line):
                span = match.group(2) or match.group(3)
                if re.search(r"(?<!\\)\|", span):
                    broken.append(f"{number}: {match.group(0)}")
    return broken


def test_broken_table_cells_are_found():
    bad = os.path.join(os.path.dirname(__file__), "broken_table.md")
    with open(bad, "w") as f:
        f.write("| a | b |\n|---|---|\n| `p(x|z)` | $q(z|x)$ |\n"
                "| `p(x \\| z)` | $p(x \\mid z)$ |\n")
    try:
        assert broken_table_cells(bad) == ["3: `p(x|z)`", "3: $q(z|x)$"]
    finally:
        os.remove(bad)


def test_no_markdown_table_cell_is_cut_by_a_pipe():
    pages = glob(os.path.join(DOCS, "**", "*.md"), recursive=True)
    broken = {os.path.relpath(p, DOCS): cells for p in pages if (cells := broken_table_cells(p))}
    assert not broken, f"use $p(x \\mid z)$ or escape the pipe: {broken}"


def running_text(html_page):
    """The text of a built page outside code blocks and inline code."""
    text = re.sub(r"<pre.*?</pre>|<code.*?</code>|<script.*?</script>", " ", html_page, flags=re.S)
    return re.sub(r"<[^>]+>", " ", text)


@needs_sphinx
def test_no_command_is_rendered_as_running_text(html):
    found = {}
    for page in html.glob("**/*.html"):
        if "_modules" not in page.parts and "_static" not in page.parts:
            hits = [m.group(0).strip() for m in COMMAND.finditer(running_text(page.read_text()))]
            if hits:
                found[str(page.relative_to(html))] = hits
    assert not found, f"commands outside code blocks (use a ```bash block or ``::``): {found}"
    assert COMMAND.search(running_text("<p>run flowvae train \u2013epochs 3</p>"))
    assert not COMMAND.search(running_text("<pre>flowvae train --epochs 3</pre>"))


def shell_commands(path):
    """The commands in the ```bash blocks of a Markdown page (continuations joined)."""
    text = open(path).read()
    commands = []
    for block in re.findall(r"^```(?:bash|sh|shell|console)\n(.*?)^```", text, re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = " ".join(line.strip().removeprefix("$ ").split())
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_every_documented_command_is_covered():
    shown = {c for page in GUIDE_PAGES for c in shell_commands(page)}
    known = set(RUN_HERE) | set(COVERED_ELSEWHERE)
    assert shown - known == set(), "commands in docs/guide/ that no test runs"
    assert known - shown == set(), "commands listed here that the docs no longer show"


def files_table(page, heading):
    """The backticked names in the first column of the table under ``heading``."""
    section = open(page).read().split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([^`]+)`", row)}


@pytest.fixture
def one_thread():
    """Tiny models run an order of magnitude faster on one thread on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_quickstart_commands_run(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.chdir(tmp_path)
    for command, tiny in RUN_HERE.items():
        argv = shlex.split(command) + tiny
        if argv[0] == "python":
            monkeypatch.setattr(sys, "argv", argv[1:])
            # as `python examples/x.py` does: the script's folder first on sys.path (_flags)
            monkeypatch.syspath_prepend(os.path.dirname(os.path.join(ROOT, argv[1])))
            runpy.run_path(os.path.join(ROOT, argv[1]), run_name="__main__")
        else:
            assert argv[0] == "flowvae"
            assert flowvae_cli(argv[1:]) == 0, command
    out = capsys.readouterr().out
    assert "test bits/dim (ELBO)" in out and "wrote runs/vapnev/samples.png" in out
    quickstart = os.path.join(DOCS, "guide", "quickstart.md")
    documented = files_table(quickstart, "## The files it writes")
    assert documented == set(os.listdir(tmp_path / "runs" / "vapnev"))
    assert (tmp_path / "runs" / "vapnev-cli" / "checkpoint.pt").is_file()
    assert "IWAE K=100" in out and (tmp_path / "samples.png").stat().st_size > 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_cpu_command_runs(tmp_path, data_root):
    assert DISTRIBUTED_CPU in shell_commands(os.path.join(DOCS, "distributed.md"))
    data_variable, launcher, *args = shlex.split(DISTRIBUTED_CPU)
    assert data_variable.startswith("FLOWVAE_DATA=") and launcher == "torchrun"
    env = dict(os.environ, FLOWVAE_DATA=data_root, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", f"--master_port={free_port()}",
               *args, *TINY_CLI_TRAIN]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "runs" / "vapnev-ddp" / "checkpoint.pt").is_file()
