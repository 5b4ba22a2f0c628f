"""``meddl``: MedDL's engines from the command line, for batch work and machines without Slicer.

Files are read and written with Slicer's own MRML storage nodes (from the ``slicer-core`` wheel), so
NRRD, NIfTI, ``.seg.nrrd`` and ``.h5`` transforms behave exactly as in Slicer.

Module libraries add their own sub-commands and demo parts through ``addCommands(subparsers)`` and
``demo(scene, outputDir, progress)`` in their command-line part (``<Module>Lib/cli.py``, the ``cli`` of the
module's :class:`~DLCommon.modules.ModuleDescription`); this file names no module: the installed ones are found
through the registry (:func:`DLCommon.modules.registeredModules`, ``meddl.modules`` entry points).

``meddl --help`` stays fast: building the parser imports no engine (torch, MONAI, Slicer / VTK); each
command's handler imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

__all__ = ["buildParser", "main"]


def _moduleClis() -> list:
    """The command-line parts of the installed modules, in module order (cheap: they import no engine)."""
    from .modules import registeredModules

    return [description.cliModule() for description in registeredModules() if description.cli]


def _quietVtk(verbose: bool) -> None:
    """VTK / MRML print warnings (e.g. missing default color tables on a bare scene) to stderr."""
    if verbose:
        return
    import vtk

    vtk.vtkObject.GlobalWarningDisplayOff()
    if hasattr(vtk, "vtkLogger"):
        vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)


def buildParser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="meddl", description="MedDL: deep learning for medical images (3D Slicer engines, headless).")
    parser.add_argument("--version", action="version", version=f"meddl {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show VTK / MRML warnings")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the memory and time a command needs on this machine, and whether it fits "
                             "(or which smaller setting it would use), without running it (meddl --dry-run segment ...)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = commands.add_parser("info", help="versions, compute device, model cache")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=_info)

    models = commands.add_parser("models", help="list, import, fetch and verify models in the catalog")
    models.add_argument("--catalog", help="catalog JSON (default $MEDDL_HOME/catalog.json)")
    models.add_argument("--cache", help="cache folder (default $MEDDL_CACHE or ~/.cache/meddl)")
    modelCommands = models.add_subparsers(dest="modelCommand", metavar="ACTION", required=True)
    modelCommands.add_parser("list", help="list catalog models").set_defaults(handler=_modelsList)
    imported = modelCommands.add_parser("import", help="copy a local model file into the cache and catalog")
    imported.add_argument("file", help="TorchScript .pt/.ts, MONAI bundle .zip, or checkpoint .pt (+ .json)")
    imported.add_argument("--id", help="catalog id (default: file name)")
    imported.add_argument("--title", default="")
    imported.add_argument("--sha256", help="expected checksum; the import is refused if it differs")
    addTrustArgument(imported)
    imported.set_defaults(handler=_modelsImport)
    inspect = modelCommands.add_parser("inspect", help="show the code a MONAI bundle runs (imports, '$' expressions, "
                                                       "targets, scripts) and its code SHA-256")
    inspect.add_argument("file", help="bundle folder or .zip")
    inspect.set_defaults(handler=_modelsInspect)
    verify = modelCommands.add_parser("verify", help="re-hash cached models against the catalog")
    verify.add_argument("ids", nargs="*", help="model ids (default: all)")
    verify.set_defaults(handler=_modelsVerify)
    fetch = modelCommands.add_parser("fetch", help="download (and verify) a catalog model into the cache")
    fetch.add_argument("id")
    fetch.set_defaults(handler=_modelsFetch)

    demo = commands.add_parser("demo", help="run the demo on the embedded MNI152 data")
    demo.add_argument("--output", required=True, help="folder for NRRD, PNG and summary files")
    demo.set_defaults(handler=_demo)

    web = commands.add_parser("web", help="the four modules in a web browser (Slicer views, served by trame-slicer)")
    web.add_argument("--port", type=int, default=8080, help="port to serve on (default 8080)")
    web.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1: this machine only, also through an SSH tunnel; "
                          "0.0.0.0: every interface, which needs the access token and should get TLS: --ssl)")
    web.add_argument("--output", help="folder where each run's results are also saved (NRRD, .seg.nrrd, .h5)")
    web.add_argument("--open", action="store_true", help="open the page in this machine's browser")
    web.add_argument("--token", help="access token the page's address must hold (default: $MEDDL_WEB_TOKEN, else a "
                                     "random one, printed in the address; a command line is visible to other users, "
                                     "the variable is not); --token \"\" turns it off, on 127.0.0.1 only")
    web.add_argument("--shared", action="store_true",
                     help="let several browsers use the page, and its one scene, at once (default: one at a time; "
                          "another browser is told the server is in use)")
    web.add_argument("--max-upload-mb", type=float, default=2048, dest="maxUploadMb", metavar="MB",
                     help="largest file, and largest upload of several files together, accepted (default 2048)")
    web.add_argument("--ssl", metavar="CERT,KEY", help="serve https with this PEM certificate and key")
    web.set_defaults(handler=_web)

    # listed for --help; main() runs it before building this parser (a widget's child starts fast)
    commands.add_parser("job", help="run a job a MedDL widget prepared in FOLDER (Slicer runs its jobs this way)"
                        ).add_argument("folder")

    for module in _moduleClis():
        module.addCommands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["job"]:  # a Slicer widget's child process: straight to the job, no parser to build
        if len(argv) != 2:
            print("usage: meddl job FOLDER  (a folder with recipe.json, written by a MedDL widget)", file=sys.stderr)
            return 2
        from .process import runRecipe

        return runRecipe(argv[1], quiet=lambda: _quietVtk(False))  # VTK loads after the first progress line
    parser = buildParser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    _quietVtk(args.verbose)
    from .errors import DLError

    try:
        if args.dry_run and not getattr(args, "dryRun", False):
            raise DLError(f"'meddl {args.command}' runs no engine, so it has no resource estimate", node="--dry-run",
                          fix="run it without --dry-run (every command of a module has one)")
        _joinTorchrun(args)
        return int(args.handler(args) or 0)
    except DLError as exc:
        print(f"meddl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("meddl: cancelled", file=sys.stderr)
        return 130
    finally:
        from .distributed import shutdownDistributed

        shutdownDistributed()


def _joinTorchrun(args) -> None:
    """Under ``torchrun`` every process runs this command: join the process group; ranks > 0 stay quiet (rank 0
    prints, shows progress and writes the outputs)."""
    import os

    from .distributed import initDistributed, launchedByTorchrun

    if not launchedByTorchrun():
        return
    context = initDistributed(getattr(args, "device", None) or "auto")
    if not context.isMain:
        import functools

        import tqdm

        tqdm.tqdm.__init__ = functools.partialmethod(tqdm.tqdm.__init__, disable=True)
        sys.stdout = open(os.devnull, "w")


# --- info -----------------------------------------------------------------------------------------------

def _versions() -> dict[str, str]:
    from importlib import metadata

    from . import __version__

    versions = {"meddl": __version__, "python": platform.python_version()}
    for package in ("torch", "monai", "slicer-core", "vtk", "numpy", "SimpleITK", "nilearn"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _info(args) -> int:
    import os

    import torch

    from .catalog import defaultCacheDir, defaultCatalogPath
    from .devices import pickDevice

    data = {
        "versions": _versions(),
        "device": str(pickDevice("auto")),
        "MEDDL_DEVICE": os.environ.get("MEDDL_DEVICE", ""),
        "cuda": {"available": torch.cuda.is_available(), "build": torch.version.cuda,
                 "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]},
        "catalog": str(defaultCatalogPath()),
        "cache": str(defaultCacheDir()),
    }
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for name, version in data["versions"].items():
        print(f"{name:12s} {version}")
    print(f"{'device':12s} {data['device']}" + (f" (MEDDL_DEVICE={data['MEDDL_DEVICE']})" if data["MEDDL_DEVICE"] else ""))
    print(f"{'cuda':12s} {'available: ' + ', '.join(data['cuda']['devices']) if data['cuda']['available'] else 'not available'}"
          f" (torch built for CUDA {data['cuda']['build'] or 'none: CPU build'})")
    print(f"{'catalog':12s} {data['catalog']}")
    print(f"{'cache':12s} {data['cache']}")
    return 0


# --- models ---------------------------------------------------------------------------------------------

def _catalog(args):
    from .catalog import ModelCatalog

    return ModelCatalog(args.catalog, args.cache)


def _modelsList(args) -> int:
    catalog = _catalog(args)
    entries = catalog.list()
    if not entries:
        print(f"No models in {catalog.catalogPath}. Import one: meddl models import FILE --id NAME")
        return 0
    for entry in entries:
        cached = "cached" if catalog.cachedPath(entry.id).exists() else "not cached"
        inputs = ((entry.spec.get("options") or {}).get("bundle") or {}).get("inputs")
        print(f"{entry.id:24s} {entry.format or '?':12s} {entry.sha256[:12]}  {cached:10s} {entry.title}"
              + (f"  (inputs: {', '.join(inputs)})" if inputs else ""))
    return 0


def addTrustArgument(parser) -> None:
    """``--trust-bundle [SHA256]``: consent to run a MONAI bundle's code (:mod:`DLCommon.bundletrust`)."""
    parser.add_argument("--trust-bundle", nargs="?", const=True, default=False, metavar="SHA256",
                        help="run this MONAI bundle's code (its imports, '$' expressions and scripts: see `meddl models "
                             "inspect FILE`); with its code SHA-256, only if the code is exactly that")


def trustFromArguments(path, args) -> None:
    """Record the consent ``--trust-bundle`` gives for the bundle at ``path`` (a no-op for other models and ids);
    without the flag, on a terminal, show the code and ask."""
    from .bundletrust import bundleCode, isTrusted, trustBundle
    from .models import detectFormat

    path = Path(str(path)).expanduser()
    if not path.exists() or detectFormat(path) != "bundle":
        return
    if args.trust_bundle:
        trustBundle(path, args.trust_bundle if isinstance(args.trust_bundle, str) else None)
    elif sys.stdin.isatty() and sys.stderr.isatty() and not isTrusted(path):
        code = bundleCode(path)  # read once: the checksum trusted is the code shown
        if code.runsCode:
            print(code.report(), file=sys.stderr)
            if input("Run this bundle's code? [y/N] ").strip().lower() in ("y", "yes"):
                trustBundle(path, code.sha256)


def _modelsImport(args) -> int:
    trustFromArguments(args.file, args)
    entry = _catalog(args).importFile(args.file, modelId=args.id, title=args.title, sha256=args.sha256)
    print(f"Imported '{entry.id}' ({entry.format}, sha256 {entry.sha256})")
    return 0


def _modelsInspect(args) -> int:
    from .bundletrust import bundleCode, isTrusted

    print(bundleCode(args.file).report())
    print("trusted: yes" if isTrusted(args.file) else "trusted: no (run with --trust-bundle to consent)")
    return 0


def _modelsVerify(args) -> int:
    from .errors import DLError

    catalog = _catalog(args)
    ids = args.ids or [e.id for e in catalog.list()]
    failures = 0
    for modelId in ids:
        try:
            catalog.verify(modelId)
            print(f"OK      {modelId}")
        except DLError as exc:
            failures += 1
            print(f"FAILED  {modelId}: {exc}")
    return 1 if failures else 0


def _modelsFetch(args) -> int:
    from tqdm import tqdm

    catalog = _catalog(args)
    with tqdm(total=100, desc=f"fetch {args.id}", unit="%") as bar:
        path = catalog.fetch(args.id, lambda f, m: bar.update(round(100 * f) - bar.n))
    print(path)
    return 0


def _web(args) -> int:
    from .web.access import checkServeOptions, resolveToken

    token = resolveToken(args.token)
    checkServeOptions(args.host, token, args.port, args.maxUploadMb, args.ssl)  # before trame and Slicer load
    from .web.app import serve

    serve(args.port, args.host, args.output, args.open, token=token, shared=args.shared,
          maxUploadMb=args.maxUploadMb, ssl=args.ssl)
    return 0


# --- demo -----------------------------------------------------------------------------------------------

def _demo(args) -> int:
    from tqdm import tqdm

    from .demo import runFoundationDemo

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    modules = _moduleClis()
    with tqdm(total=100 * (1 + len(modules)), desc="meddl demo", unit="%",
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} [{elapsed}<{remaining}]") as bar:
        def progressFor(part: int):
            def progress(fraction: float, message: str = "") -> None:
                bar.set_postfix_str(message[:40])
                bar.update(100 * part + 100 * fraction - bar.n)
            return progress

        summary, scene = runFoundationDemo(output, progressFor(0))
        for index, module in enumerate(modules, start=1):
            summary.setdefault("modules", {})[module.__name__.split(".")[0]] = module.demo(scene, output, progressFor(index))
    panels = {f"{module}: {name}": output / name for module, part in summary.get("modules", {}).items()
              for name in part.get("files", []) if name.endswith(".png") and (output / name).exists()}
    if panels:  # every module's result on one page
        from .montage import saveOverview

        from .modules import registeredModules

        titles = ", ".join(m.title.lower() for m in registeredModules() if m.cli in {c.__name__ for c in modules})
        saveOverview(output / "overview.png", panels, title=f"MedDL demo on the embedded MNI152 data: {titles}")
        summary["files"] = summary.get("files", []) + ["overview.png"]
    summary["seconds"] = round(time.monotonic() - started, 1)
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"Demo written to {output.resolve()}:")
    for path in sorted(output.iterdir()):
        print(f"  {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
