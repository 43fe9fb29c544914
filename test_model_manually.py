"""Query a trained checkpoint by hand: python test_model_manually.py [--checkpoint PATH] [--expr TEXT]."""
from glassformer.cli.repl import main

raise SystemExit(main())
