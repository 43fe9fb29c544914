"""python -m glassformer.data fetch NAME: the command is in glassformer.cli.fetch."""
from ..cli.fetch import main

raise SystemExit(main())
