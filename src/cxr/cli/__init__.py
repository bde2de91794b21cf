"""The `cxr` command: a thin shell over the package, one module per group of the user's verbs."""

from __future__ import annotations

from cxr.cli import doctor, evaluate, predict, radiology, signing, train  # noqa: F401 (registers)
from cxr.cli.benchmark import benchmark_app
from cxr.cli.common import app, error, quiet_libraries
from cxr.cli.data import data_app
from cxr.cli.radiology import reviews_app
from cxr.errors import CxrError

app.add_typer(data_app, name="data")
app.add_typer(benchmark_app, name="benchmark")
app.add_typer(reviews_app, name="reviews")


def main() -> None:
    """Entry point: our own errors print as one clear line and exit 2, never as a traceback."""
    quiet_libraries()
    try:
        app()
    except CxrError as exc:
        error(str(exc))
        raise SystemExit(2) from None
