"""python -m glassformer.lessons check NN | --all | list: the command is in glassformer.cli.lessons."""
from ..cli.lessons import main

raise SystemExit(main())
