"""`ccgw model import FILE.gguf DIR` and `ccgw model digest DIR`: prepare model folders for a worker.

The import runs here, outside the worker: the worker only ever loads a digest-pinned Hugging Face
folder (safetensors, JSON, tokenizer.json). Both commands print the folder's digest, as the only
line on stdout, exactly as `ccgw worker --model NAME=DIR@SHA256` pins it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ccgw.commands._common import EXIT_CHECK_FAILED, CliError, Subparsers


def register(sub: Subparsers) -> None:
    m = sub.add_parser("model", help="import a GGUF model; print a model folder's digest")
    msub = m.add_subparsers(dest="model_command", required=True, metavar="{import,digest}")
    imp = msub.add_parser(
        "import",
        help="convert a GGUF file (Llama architecture) into a model folder a worker loads",
        description=__doc__,
    )
    imp.add_argument("gguf", type=Path, metavar="FILE.gguf", help="the GGUF file to convert")
    imp.add_argument(
        "dir", type=Path, metavar="DIR", help="new folder (must not exist, or be empty)"
    )
    imp.set_defaults(func=_import)
    dig = msub.add_parser("digest", help="print the digest a worker's --model NAME=DIR@SHA256 pins")
    dig.add_argument("dir", type=Path, metavar="DIR", help="a model folder")
    dig.set_defaults(func=_digest)


def _import(args: argparse.Namespace) -> int:
    from ccgw.modelimport import ModelImportError, import_gguf

    if not args.gguf.is_file():
        raise CliError(f"{args.gguf} is not a file")
    try:
        r = import_gguf(args.gguf, args.dir)
    except ModelImportError as exc:
        raise CliError(f"{args.gguf.name}: {exc}") from None
    types = ", ".join(f"{k} x{v}" for k, v in r.tensor_types.items())
    print(
        f"imported {r.tensors} tensors ({r.parameters:,} parameters; {types}) into {r.path}; "
        f"serve it with: ccgw worker --model NAME={r.path}@{r.sha256.hex()}",
        file=sys.stderr,
    )
    print(r.sha256.hex())
    return 0


def _digest(args: argparse.Namespace) -> int:
    from ccgw.verify.digests import model_dir_manifest
    from ccgw.verify.errors import VerifyError

    try:
        digest, _ = model_dir_manifest(args.dir)
    except VerifyError as exc:
        raise CliError(str(exc), EXIT_CHECK_FAILED) from None
    print(digest.hex())
    return 0
