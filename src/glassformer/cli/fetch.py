"""python -m glassformer.data fetch NAME... | all | --list: the command line of glassformer.data.fetch
(the public data sets, each downloaded once into the cache and checked against its pinned SHA-256)."""
import argparse

from ..data import fetch as datasets
from ..errors import Parser, UserError, run_main


def build_parser():
    """python -m glassformer.data fetch NAME... | all | --list."""
    p = Parser(prog="python -m glassformer.data", description=datasets.__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.see = "python -m glassformer.data fetch --help"      # its one sub-command's flags
    sub = p.add_subparsers(dest="command", metavar="fetch", required=True)
    f = sub.add_parser("fetch", help="download data sets into the cache", description=datasets.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("names", nargs="*", metavar="NAME", help=f"{', '.join(datasets.NAMES)}, or all")
    f.add_argument("--list", action="store_true", help="list the data sets, their sizes and whether each "
                   "is in the cache")
    return p


def list_lines(home):
    """--list: one line per data set (name, size, in the cache or not), then where the cache is."""
    width = max(map(len, datasets.NAMES))
    lines = []
    for name in datasets.NAMES:
        size = sum(r.bytes for r in datasets.files_of(name))
        state = "fetched" if datasets.is_fetched(name, home) else "not fetched"
        files = ", ".join(r.file for r in datasets.files_of(name))
        lines.append(f"{name:<{width}}  {size / 1e6:5.1f} MB  {state:<11}  {files}")
    return lines + [f"cache: {home} (set {datasets.HOME_ENV} to change it)"]


def chosen_names(names):
    """The data sets named on the command line (all: every one); UserError for an unknown name."""
    known = datasets.NAMES
    if not names:
        raise UserError(f"fetch needs a data set: {', '.join(known)} or all (--list shows them)")
    if "all" in names:
        return list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"fetch: unknown data set {', '.join(unknown)}: use {', '.join(known)} or all")
    return list(dict.fromkeys(names))


def command(argv=None):
    """Fetch the named data sets (or list them); exit status 0."""
    args = build_parser().parse_args(argv)
    home = datasets.data_home()
    if args.list:
        print("\n".join(list_lines(home)))
        return 0
    for name in chosen_names(args.names):
        datasets.fetch(name, home)
    return 0


def main(argv=None):
    """Entry point: the command inside the error boundary (one `error:` line, exit 2)."""
    return run_main(command, argv)
