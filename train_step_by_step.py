"""Walk one example through a transformer stage by stage, then train it: see --help."""
from glassformer.cli.step_by_step import main

raise SystemExit(main())
