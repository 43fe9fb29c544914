"""python -m glassformer.explain: the command is in glassformer.cli.explain."""
from ..cli.explain import main

raise SystemExit(main())
