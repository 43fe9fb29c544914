"""Walk one example through a transformer stage by stage, then train it: see --help."""
from glassformer.cli.train import main

raise SystemExit(main())
