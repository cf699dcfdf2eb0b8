"""The setup, for a local environment: `python -m misc.setup_local_environment`.

The setup itself is product code, `python -m shared.setup`; this name stays
for those used to it.
"""

from shared.setup import main

if __name__ == "__main__":
    raise SystemExit(main())
