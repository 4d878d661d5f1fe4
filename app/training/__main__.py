"""``python -m app.training`` = ``msa train``."""

from app.training.pipeline import main

raise SystemExit(main())
