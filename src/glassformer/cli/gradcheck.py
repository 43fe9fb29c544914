"""python -m glassformer.gradcheck [--layer NAME] [--list] [--json] [--tol T]: the command line.

Every registered case (glassformer.gradcheck.CASES) checks a layer's or model's backward against
central differences in float64; exit status 0 when all pass, 1 when one fails, 2 on bad input.
"""
import json

from ..domains import Domain
from ..errors import Parser, UserError, run_main
from ..gradcheck import CASES, TOLERANCE, run_case

TOL = Domain(float, 1e-15, 1.0)                             # a relative error: 0 fails every check, NaN none


def parse_args(argv):
    parser = Parser(prog="python -m glassformer.gradcheck",
                    description="Check every backward() against central differences in float64.")
    parser.add_argument("--layer", help="check one case (see --list); default: all")
    parser.add_argument("--list", action="store_true", help="list the case names and exit")
    parser.add_argument("--json", action="store_true", help="print a JSON list of records")
    parser.add_argument("--tol", type=TOL, default=TOLERANCE,
                        help="max relative error allowed (default: %(default)g)")
    return parser.parse_args(argv)


def chosen_cases(layer):
    """The cases --layer names (exactly, or by base name in any case); all of them without it."""
    if not layer:
        return list(CASES)
    matches = [n for n in CASES if n == layer] or [n for n in CASES if n.split("[")[0].lower() == layer.lower()]
    if not matches:
        raise UserError(f"no gradient-check case named {layer!r}; choose one of: {', '.join(CASES)}")
    return matches


def print_table(records, tol):
    """A case's name, then one line per tensor: ~55 columns, not ~100 in one."""
    twidth = max([10] + [len(r["tensor"]) for r in records])
    print(f"{'case: tensor':<{twidth + 2}}  max rel error  result")
    for i, r in enumerate(records):
        if i == 0 or r["name"] != records[i - 1]["name"]:
            print(f"{r['name']}:")
        print(f"  {r['tensor']:<{twidth}}  {r['max_rel_error']:13.2e}  {'pass' if r['passed'] else 'FAIL'}")
    failed = sum(not r["passed"] for r in records)
    print(f"{len(records) - failed} passed, {failed} failed (tolerance {tol:g})")


def command(argv=None):
    """Run the chosen cases; exit status 1 when one fails."""
    args = parse_args(argv)
    if args.list:
        print("\n".join(CASES))
        return 0
    records = [r for name in chosen_cases(args.layer) for r in run_case(name, tol=args.tol)]
    if args.json:
        print(json.dumps(records, indent=1))
    else:
        print_table(records, args.tol)
    return 1 if any(not r["passed"] for r in records) else 0


def main(argv=None):
    """Entry point: the command inside the error boundary (one `error:` line, exit 2)."""
    return run_main(command, argv)

