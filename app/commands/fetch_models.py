"""`python -m app models fetch`: download model weights, or locate packaged ones, and check them."""

from __future__ import annotations

import argparse
import sys

from app.config import Settings


def fetch_models(args: argparse.Namespace, settings: Settings) -> int:
    # Here, not at the top: cli.py imports this module for every command, `--help` included.
    from app.errors import ModelError
    from app.pipeline.embedders import load_model_specs
    from app.pipeline.embedders.weights import fetch_model

    specs = load_model_specs(settings.models_dir)
    names = args.names or list(specs)
    unknown = [name for name in names if name not in specs]
    if unknown:
        print(f"unknown model {unknown[0]!r}; known: {', '.join(specs)}", file=sys.stderr)
        return 2
    for name in names:
        spec = specs[name]
        try:
            # A model shipped inside a pip package is only located and checked.
            path = fetch_model(spec, settings.models_dir)
        except ModelError as error:
            hint = (
                f"\nWithout internet here, fetch it where there is "
                f"(python -m app models fetch {name}) and copy the file to "
                f"{settings.models_dir / spec.file} here."
                if spec.kind == "file"
                else ""
            )
            print(f"{name}: {error.message}{hint}", file=sys.stderr)
            return 1
        how = "sha256 verified" if spec.kind == "file" else f"in {spec.package}, sha256 verified"
        print(f"{name}: {path} ({how})\n  licence: {spec.licence}")
    return 0
