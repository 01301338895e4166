"""``python -m flowvae``: the same command line as the ``flowvae`` console script."""

from flowvae.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
