"""python -m glassformer.data fetch NAME: see data/fetch.py."""
from .fetch import main
raise SystemExit(main())
