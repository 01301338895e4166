"""Paper-length results: run folders to ``docs/results/<paper>.json``, and those to
``docs/reproducibility.md``.

Every record of ``docs/results/*.json`` is one number of one trained model (the schema is
:data:`KEYS`; ``tests/test_results.py`` checks every file against it)::

    python examples/paper_results.py collect vapnev_mnist runs/paper/vapnev_mnist
    python examples/paper_results.py collect rho_vae runs/paper/rho_vae --commit f7cda7d \\
        --command "python examples/rho_vae.py --paper --models vanilla beta"
    python examples/paper_results.py collect zhao runs/paper/zhao-sequential --commit f7cda7d \\
        --command "python examples/sequential_vae.py --paper --datasets mnist"
    python examples/paper_results.py render         # docs/reproducibility.md

``collect`` merges: a record replaces the one with the same paper, model, dataset, seed,
epochs, metric and ``iwae_k``; only finished models are collected (a rho-VAE run at its last
epoch, each finished VAPNEV epoch), so it can run while training goes on.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "..", "docs", "results")
PAGE = os.path.join(HERE, "..", "docs", "reproducibility.md")

KEYS = ("paper", "model", "dataset", "seed", "epochs", "steps", "train_images", "test_images",
        "metric", "value", "unit", "iwae_k", "command", "commit", "hardware", "train_minutes")
"""The keys of every record, in the order they are written."""

IDENTITY = ("paper", "model", "dataset", "seed", "epochs", "metric", "iwae_k")


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def hardware(threads: int = 1) -> str:
    import torch

    return (f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} with "
            f"{threads} thread(s)")


def commit_id() -> str:
    """The short commit of this checkout (``FLOWVAE_COMMIT`` in a ``git archive`` snapshot)."""
    if os.environ.get("FLOWVAE_COMMIT"):
        return os.environ["FLOWVAE_COMMIT"]
    try:
        return subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def record(**fields) -> dict:
    missing = set(KEYS) - set(fields)
    if missing:
        raise ValueError(f"a record lacks {sorted(missing)}")
    return {k: fields[k] for k in KEYS}


def history(run_dir: str) -> list:
    """``fit``'s rows from ``run_dir/metrics.jsonl`` (one per finished epoch)."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


# ---------------------------------------------------------------- the papers' run folders


def collect_vapnev_mnist(out: str, **_) -> list:
    """Per finished epoch of each model of ``examples/vapnev_mnist.py``."""
    metrics = {"test_bpd": ("bits_per_dim", "bits/dim", None),
               "test_bpd_iwae": ("bits_per_dim", "bits/dim", "iwae"),
               "test_nelbo": ("neg_elbo", "nats", None), "test_rate_z": ("rate", "nats", None),
               "test_active_units_z": ("active_units", "of 16", None),
               "labels_kept": ("labels_kept", "share", None)}
    records = []
    for path in sorted(glob.glob(os.path.join(out, "*", "epochs.json"))):
        with open(path) as f:
            run = json.load(f)
        c = run["config"]
        name = {"vapnev": f"VAPNEV, free bits {c['free_bits']:g} nat/dim",
                "flow": "RealNVP without z (FlowDensity, nearest parameter count)"}[run["model"]]
        for row in run["rows"]:
            for key, (metric, unit, iwae) in metrics.items():
                if key not in row:
                    continue
                images = {"test_bpd_iwae": "iwae_images", "labels_kept": "label_images"}.get(
                    key, "test_images")
                records.append(record(
                    paper="vapnev", model=name, dataset=c["dataset"], seed=c["seed"],
                    epochs=row["epoch"], steps=row["step"], train_images=run["train_images"],
                    test_images=row[images], metric=metric, value=row[key],
                    unit=unit.replace("16", str(c["latent_dim"])),
                    iwae_k=c["iwae"] if iwae else None,
                    command=run["command"].replace(c["out"], out),
                    commit=run["commit"], hardware=run["hardware"],
                    train_minutes=round(row["train_minutes"], 2)))
    return records


def collect_rho_vae(out: str, commit: str, command: str, **_) -> list:
    """The last epoch of each finished run in ``<out>/<dataset>/results.json``."""
    records = []
    for path in sorted(glob.glob(os.path.join(out, "*", "results.json"))):
        with open(path) as f:
            results = json.load(f)
        c = results["config"]
        for key, run in results["runs"].items():
            dataset, variant, guide, seed = key.split("/")
            last = run["curve"][-1]
            if last["epoch"] != c["epochs"] or "iwae_nll" not in last:
                continue
            rows = history(os.path.join(out, dataset, f"{variant}-{guide}-{seed}"))
            values = {"neg_elbo": (last["nelbo"], None), "nll_iwae": (last["iwae_nll"], c["iwae"]),
                      "rate": (last["rate_z"], None),
                      "active_units": (last["active_units_z"], None)}
            for metric, (value, k) in values.items():
                records.append(record(
                    paper="rho_vae", model=f"{variant}, {LABELS[guide]} q", dataset=dataset,
                    seed=int(seed), epochs=last["epoch"], steps=rows[-1]["step"],
                    train_images=60000 if not c["train_size"] else c["train_size"],
                    test_images=10000 if not c["eval_images"] else c["eval_images"],
                    metric=metric, value=value,
                    unit=f"of {c['latent_dim']}" if metric == "active_units" else "nats",
                    iwae_k=k, command=command, commit=commit, hardware=hardware(),
                    train_minutes=round(sum(r["seconds"] for r in rows) / 60, 2)))
    return records


LABELS = {"normal": "diagonal", "ar1": "AR(1)"}


def collect_zhao(out: str, commit: str, command: str, iwae: int = 100, **_) -> list:
    """The sequential VAE and its one-step baseline, evaluated from their checkpoints on every
    test image (dynamic binarization with a fixed seed): test -ELBO, IWAE NLL with ``iwae``
    samples, and per step ``z_t`` the rate, I(x; z_t) and active units."""
    import torch

    from flowvae.data import load_dataset
    from flowvae.infer import iwae_log_likelihood
    from flowvae.train import evaluate_elbo, load_model

    records = []
    for run_dir in sorted(glob.glob(os.path.join(out, "*", "*", "checkpoint.pt"))):
        run_dir = os.path.dirname(run_dir)
        dataset, name = run_dir.split(os.sep)[-2:]
        model = load_model(os.path.join(run_dir, "checkpoint.pt")).eval()
        rows = history(run_dir)
        test = load_dataset(dataset, "test").images
        torch.manual_seed(0)
        metrics = evaluate_elbo(model, test)
        torch.manual_seed(0)
        log_px = torch.cat([iwae_log_likelihood(model.model, model.guide, model.preprocess(x),
                                                iwae, chunk_size=min(iwae, 100))
                            for x in test.split(500)])
        per_x = "nats" if model.steps == 1 else f"nats, x scored at each of {model.steps} steps"
        values = [("neg_elbo", None, metrics["nelbo"], per_x, None),
                  ("nll_iwae", None, -log_px.mean().item(), per_x, iwae)]
        torch.manual_seed(0)
        variance = model.posterior_variance(model.preprocess(test), target=test.float() / 255,
                                            num_samples=4)
        samples = model.generate(1000, mean=True)
        for t, site in enumerate(model.latent_sites):
            p = samples[t].clamp(1e-6, 1 - 1e-6)
            entropy = float(-(p * p.log2() + (1 - p) * (1 - p).log2()).mean())
            values += [("posterior_variance", site, float(variance[t]), "per pixel", None),
                       ("sample_entropy", site, entropy, "bits/pixel", None),
                       ("rate", site, metrics[f"rate_{site}"], "nats", None),
                       ("mutual_info", site, metrics[f"mutual_info_{site}"], "nats", None),
                       ("active_units", site, metrics[f"active_units_{site}"],
                        f"of {model.latent_dim}", None)]
        label = (f"sequential VAE, T={model.steps}" if model.steps > 1
                 else f"one-step VAE, {model.latent_dim}-dim z")
        for metric, site, value, unit, k in values:
            records.append(record(
                paper="zhao", model=label + (f" ({site})" if site and model.steps > 1 else ""),
                dataset=dataset, seed=0, epochs=rows[-1]["epoch"], steps=rows[-1]["step"],
                train_images=60000, test_images=len(test), metric=metric, value=value,
                unit=unit, iwae_k=k, command=command, commit=commit, hardware=hardware(),
                train_minutes=round(sum(r["seconds"] for r in rows) / 60, 2)))
    return records


COLLECT = {"vapnev_mnist": collect_vapnev_mnist, "rho_vae": collect_rho_vae,
           "zhao": collect_zhao}


def merge(paper_file: str, records: list, root: str = RESULTS) -> int:
    """Write ``records`` into ``docs/results/<paper_file>.json``, replacing those with the
    same identity; returns the number of records in the file."""
    path = os.path.join(root, f"{paper_file}.json")
    old = json.load(open(path)) if os.path.exists(path) else []
    key = lambda r: tuple(r[k] for k in IDENTITY)  # noqa: E731
    merged = {key(r): r for r in old}
    merged.update({key(r): r for r in records})
    rows = sorted(merged.values(), key=lambda r: tuple(str(r[k]) for k in IDENTITY))
    os.makedirs(root, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(rows, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)
    return len(rows)


def load_results(root: str = RESULTS) -> dict:
    """``paper file name -> records`` for every ``docs/results/*.json``."""
    return {os.path.basename(p)[:-5]: json.load(open(p))
            for p in sorted(glob.glob(os.path.join(root, "*.json")))}


# ---------------------------------------------------------------- rendering


def mean_pm(values) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def select(records, **where) -> list:
    return [r for r in records if all(r[k] == v for k, v in where.items())]


def rho_vae_rows(records: list) -> list:
    """One row per dataset and variant: AR(1) minus diagonal test NLL, paired over seeds."""
    rows = []
    cells = sorted({(r["dataset"], r["model"].split(",")[0]) for r in records})
    for dataset, variant in cells:
        nll = {g: {r["seed"]: r for r in select(records, dataset=dataset, metric="nll_iwae",
                                                 model=f"{variant}, {g} q")}
               for g in ("diagonal", "AR(1)")}
        seeds = sorted(set(nll["diagonal"]) & set(nll["AR(1)"]))
        if not seeds:
            continue
        diff = [nll["AR(1)"][s]["value"] - nll["diagonal"][s]["value"] for s in seeds]
        rate = [r["value"] for r in select(records, dataset=dataset, metric="rate")
                if r["model"].startswith(variant + ",")]
        some = nll["diagonal"][seeds[0]]
        spread = statistics.stdev(diff) / math.sqrt(len(diff)) if len(diff) > 1 else math.inf
        verdict = ("reproduced" if max(diff) < 0 and len(seeds) >= 3 else
                   "not reproduced" if len(seeds) >= 3 else f"{len(seeds)} of 3 seeds so far")
        rows.append([f"{dataset} {variant}: AR(1) q has a lower test NLL than diagonal q",
                     "lower in every cell (figures only, no numbers)",
                     f"AR(1) - diagonal = {mean_pm(diff)} nats (IWAE K={some['iwae_k']}, "
                     f"{len(seeds)} seeds; diagonal "
                     f"{mean_pm([nll['diagonal'][s]['value'] for s in seeds])}"
                     f"; rate {mean_pm(rate)} nats; s.e. {spread:.2f})",
                     f"{some['epochs']} epochs, {some['train_images']:,} images, "
                     f"{some['train_minutes']:.0f} min/model", some["command"], verdict])
    return rows


SPREAD = 0.05
"""bits/dim between two runs that differ only in their initial weights (docs/papers/vapnev.md)."""


def vapnev_rows(records: list) -> list:
    """The paper's question at each common epoch: VAPNEV (using z) against the flow without z."""
    ours = [r for r in records if r["model"].startswith("VAPNEV")]
    flow = [r for r in records if r["model"].startswith("RealNVP")]
    both = sorted({r["epochs"] for r in ours} & {r["epochs"] for r in flow})
    if not both:
        return []
    epoch = both[-1]

    def value(rs, metric, iwae=False):
        hit = [r for r in rs if r["epochs"] == epoch and r["metric"] == metric
               and (r["iwae_k"] is not None) == iwae]
        return hit[0] if hit else None

    a, b = value(ours, "bits_per_dim", True), value(flow, "bits_per_dim", True)
    ea, eb = value(ours, "bits_per_dim"), value(flow, "bits_per_dim")  # all test images
    rate, kept = value(ours, "rate"), value(ours, "labels_kept")
    ahead, lead = b["value"] - a["value"], eb["value"] - ea["value"]
    if lead <= 0 or kept["value"] <= 0.5:
        verdict = "not reproduced" if epoch >= 5 else f"open at epoch {epoch}"
    elif lead > SPREAD:
        verdict = "reproduced (one seed)"
    else:
        verdict = (f"VAPNEV ahead by {lead:.3f} bits/dim (ELBO), within the {SPREAD} run-to-run "
                   f"spread: one seed does not settle it")
    return [["MNIST: a VAPNEV that uses z beats the same flow without z at equal parameters "
             "and steps", "CIFAR-10: VAPNEV 2.8 < Real NVP 3.02 bits/dim (no MNIST number)",
             f"IWAE bits/dim {a['value']:.3f} (VAPNEV) vs {b['value']:.3f} (no z): VAPNEV "
             f"{'ahead' if ahead > 0 else 'behind'} by {abs(ahead):.3f}; "
             f"rate {rate['value']:.1f} nats, labels kept "
             f"{kept['value']:.1%} (K={a['iwae_k']}, {a['test_images']} images; one seed); "
             f"by the ELBO on {ea['test_images']:,} images {ea['value']:.3f} vs "
             f"{eb['value']:.3f}",
             f"{epoch} epoch{'s' if epoch > 1 else ''} = {a['steps']:,} steps of 64 on "
             f"{a['train_images']:,} images, "
             f"{a['train_minutes']:.0f} (VAPNEV) and {b['train_minutes']:.0f} (no z) training "
             "minutes on one loaded core each", a["command"], verdict]]


def zhao_rows(records: list) -> list:
    """Within the sequential VAE, does each step lower the posterior variance and sharpen the
    samples; and does its last step beat a one-step VAE of the same latent size and parameters?"""
    seq = [r for r in records if r["model"].startswith("sequential")]
    one = {r["metric"]: r for r in records if r["model"].startswith("one-step")}
    if not seq:
        return []

    def by_step(metric):
        return [v for _, v in sorted((r["model"], r["value"]) for r in seq
                                     if r["metric"] == metric)]

    variance, entropy = by_step("posterior_variance"), by_step("sample_entropy")
    rate = by_step("rate")
    falling = all(x > y for x, y in zip(variance, variance[1:]))
    sharper = all(x > y for x, y in zip(entropy, entropy[1:]))
    some = seq[0]
    budget = (f"{some['epochs']} epochs, {some['train_images']:,} images, "
              f"{some['train_minutes']:.0f} min (one-step VAE "
              f"{one['rate']['train_minutes']:.0f} min)" if one else "")
    rows = [["MNIST: each step of a sequential VAE lowers the posterior variance "
             "(Proposition 5) and sharpens the samples", "shown on CelebA/LSUN (figures only)",
             "posterior variance per pixel by step: " + ", ".join(f"{v:.4f}" for v in variance)
             + "; sample entropy (bits/pixel): " + ", ".join(f"{v:.3f}" for v in entropy)
             + "; rate by step: " + ", ".join(f"{v:.1f}" for v in rate) + " nats",
             budget, some["command"], "reproduced" if falling and sharper else "not reproduced"]]
    if one:
        beats = (variance[-1] < one["posterior_variance"]["value"]
                 and entropy[-1] < one["sample_entropy"]["value"])
        rows.append(["MNIST: the sequential VAE's samples are sharper than a one-step VAE's of "
                     "the same latent size and parameter count",
                     "shown on CelebA/LSUN (figures only)",
                     f"last step {variance[-1]:.4f} / {entropy[-1]:.3f} bits vs one-step "
                     f"{one['posterior_variance']['value']:.4f} / "
                     f"{one['sample_entropy']['value']:.3f} bits (posterior variance / sample "
                     f"entropy); one-step test NLL {one['nll_iwae']['value']:.2f} nats "
                     f"(IWAE K={one['nll_iwae']['iwae_k']}; the sequential model's bound scores "
                     f"x at each step and is not comparable)", budget, some["command"],
                     "reproduced" if beats else "not reproduced"])
    return rows


NOT_RUN = {
    "vapnev_mnist": [["MNIST: a VAPNEV that uses z beats the same flow without z at equal "
                      "parameters and steps", "CIFAR-10: VAPNEV 2.8 < Real NVP 3.02 bits/dim",
                      "-", "5 epochs of each model", "python examples/vapnev_mnist.py",
                      "open: no epoch finished by both models yet"]],
    "rho_vae": [["MNIST and Fashion-MNIST, 4 variants: AR(1) q has a lower test NLL than "
                 "diagonal q", "lower in every cell (figures only, no numbers)", "-",
                 "48 models x 50 epochs of all images; measured 16-22 s per epoch of an MLP "
                 "model on a loaded core (600 steps), so about 15 min per MLP model and "
                 "several times that for conv",
                 "python examples/rho_vae.py --paper",
                 "not run here yet: started, and stopped at epoch 21 of its first model to "
                 "give both cores to VAPNEV; `--resume` continues it"]],
    "posterior_flows": [["binarized MNIST: a RealNVP posterior (k = 2) beats planar flows and "
                         "the diagonal Gaussian", "rNVP k=2: 60.57 (-log p(x|z), not an NLL); "
                         "literature anchors: VAE 86.55, planar 86.06 nats",
                         "-", "100 epochs x 7 models (about 4-6 core-hours)",
                         "python examples/posterior_flows.py --paper",
                         "not run here yet (CPU time went to VAPNEV and rho-VAE first)"]],
    "srvae": [["CIFAR-10 / CelebA bits/dim of the RealNVP-prior VAE and srVAE", "see the paper",
               "-", "-", "python examples/srvae.py --paper --device cuda",
               "not run here (CIFAR-10 and CelebA cannot be had on this machine; GPU work)"]],
}

ALWAYS = {  # findings that stand beside the records' rows
    "rho_vae": [["InfoVAE's latent collapsed (rate 0.00 at MMD weight 80 or 1000): a defect?",
                 "no weight given", "not a defect: the MMD term matches a hand computation "
                 "(tests/test_infovae.py); a large weight on from step 1 holds q(z) at the "
                 "prior before the decoder uses z (MNIST, 6,000 images, 20 epochs: rate 5.75 "
                 "nats at 1000, 13.02 at 100, 13.92 at 0)", "300 and 1,200 steps",
                 "python examples/rho_vae.py --models infovae --mmd-weight 1000 "
                 "--train-size 6000 --epochs 20",
                 "answered: the default weight is now 100 (the rho-VAE page)"]],
}

SECTIONS = [("vapnev_mnist", "VAPNEV (Agrawal & Dukkipati)", vapnev_rows),
            ("rho_vae", "rho-VAE (AR(1) posteriors)", rho_vae_rows),
            ("posterior_flows", "RealNVP posterior flows", None),
            ("zhao", "Zhao et al.: the sequential VAE", zhao_rows),
            ("srvae", "srVAE", None)]
HEADER = "| claim | the paper's number | flowvae's number | budget | command | verdict |"


def render(results: dict) -> str:
    lines = [PREAMBLE]
    for name, title, rows in SECTIONS:
        table = rows(results.get(name, [])) if rows else []
        table = (table or NOT_RUN.get(name) or [[
            "-", "-", "-", "-", "-", "not run here yet (no finished model recorded)"]]
        ) + ALWAYS.get(name, [])
        lines += [f"## {title}", "", HEADER, "|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(cell(c, i == 4) for i, c in enumerate(row)) + " |"
                  for row in table]
        if name in results:
            lines += ["", f"{len(results[name])} records: "
                          f"[`docs/results/{name}.json`](results/{name}.json)."]
        lines.append("")
    if "vapnev_mnist" in results:
        lines += curve_table(results["vapnev_mnist"])
    return "\n".join(lines)


def cell(text, code: bool = False) -> str:
    """A table cell: ``|`` escaped; a command as inline code (never running text)."""
    text = str(text).replace("|", "\\|")
    return f"`{text}`" if code and text.startswith("python") else text


def curve_table(records: list) -> list:
    """VAPNEV and the flow without z, epoch by epoch."""
    models = sorted({r["model"] for r in records})
    epochs = sorted({r["epochs"] for r in records})
    lines = ["## VAPNEV on MNIST, epoch by epoch", "",
             "| model | epoch | steps | bits/dim (ELBO) | bits/dim (IWAE) | rate (nats) | "
             "active units | labels kept | training minutes |", "|" + "---|" * 9]
    for model, epoch in ((m, e) for m in models for e in epochs):
        rs = [r for r in records if r["model"] == model and r["epochs"] == epoch]
        if not rs:
            continue
        get = {(r["metric"], r["iwae_k"] is not None): r for r in rs}
        cell = lambda key, fmt: fmt.format(get[key]["value"]) if key in get else "-"  # noqa
        lines.append(f"| {model} | {epoch} | {rs[0]['steps']:,} | "
                     f"{cell(('bits_per_dim', False), '{:.4f}')} | "
                     f"{cell(('bits_per_dim', True), '{:.4f}')} | "
                     f"{cell(('rate', False), '{:.2f}')} | "
                     f"{cell(('active_units', False), '{:d}')} | "
                     f"{cell(('labels_kept', False), '{:.1%}')} | {rs[0]['train_minutes']} |")
    return lines + [""]


PREAMBLE = """# Reproducibility

Does flowvae reproduce its five papers? This page answers claim by claim, from the records in
`docs/results/*.json`: one record per number of one trained model, with its budget, command,
commit and hardware. It is generated: `python examples/paper_results.py render` (a test fails
when the page and the records disagree). A verdict is *reproduced* when flowvae's number shows
the paper's claim over every seed run, *not reproduced* when the full budget ran and it does not,
and *not run here* (with the reason) otherwise. "±" is the standard deviation over seeds.

The runs are paper-length on 2 CPU cores, one thread each, at most two at once; each resumes
from its last epoch (`--resume`), and each finished model is committed as it lands. To run one
(or continue it: the same command with `--resume`), from a snapshot of the code so that edits
to the tree cannot change it mid-run:

```bash
git archive HEAD | tar -x -C /tmp/snap && cd /tmp/snap
OMP_NUM_THREADS=1 PYTHONPATH=$PWD python examples/vapnev_mnist.py --models vapnev \\
    --out $OLDPWD/runs/paper/vapnev_mnist            # and --models flow, beside it
OMP_NUM_THREADS=1 PYTHONPATH=$PWD python examples/rho_vae.py --paper \\
    --out $OLDPWD/runs/paper/rho_vae
OMP_NUM_THREADS=1 PYTHONPATH=$PWD python examples/sequential_vae.py --paper --datasets mnist \\
    --out $OLDPWD/runs/paper/zhao-sequential
cd - && python examples/paper_results.py collect vapnev_mnist runs/paper/vapnev_mnist
```
"""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    collect = sub.add_parser("collect", help="run folders -> docs/results/<paper>.json")
    collect.add_argument("paper", choices=sorted(COLLECT))
    collect.add_argument("out", help="the run's --out folder")
    collect.add_argument("--commit", default=None, help="commit the run was started from")
    collect.add_argument("--command", default="", help="the run's command line")
    sub.add_parser("render", help="docs/results/*.json -> docs/reproducibility.md")
    args = parser.parse_args(argv)
    if args.action == "collect":
        if not os.path.isdir(args.out):
            parser.error(f"no run folder {args.out!r}")
        records = COLLECT[args.paper](args.out, commit=args.commit or commit_id(),
                                      command=args.command)
        total = merge(args.paper, records)
        print(f"{len(records)} records collected, {total} in docs/results/{args.paper}.json")
    with open(PAGE, "w") as f:
        f.write(render(load_results()))
    print(f"wrote {os.path.relpath(PAGE)}")


if __name__ == "__main__":
    sys.exit(main())
