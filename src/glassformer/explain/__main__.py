"""python -m glassformer.explain: see glassformer.explain.command."""
from .command import main

raise SystemExit(main())
