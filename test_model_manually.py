"""Query a trained checkpoint by hand: python test_model_manually.py [--checkpoint PATH] [--expr TEXT]."""
import sys

try:                                    # Ctrl-C while NumPy and glassformer load: quiet, exit 130
    from glassformer.cli.repl import main
except KeyboardInterrupt:
    print(file=sys.stderr)
    raise SystemExit(130) from None
except ModuleNotFoundError as e:        # not installed: say how, not a traceback
    print(f"error: cannot import {e.name!r}; install glassformer first: pip install -e .", file=sys.stderr)
    raise SystemExit(2) from None

raise SystemExit(main())              # main runs inside errors.run_main, the one boundary
