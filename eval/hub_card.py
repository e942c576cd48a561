#!/usr/bin/env python
"""`python eval/hub_card.py --help`: see mesa_lm.hub.cli.hub_card_main (also the console script mesa-hub-card)."""

import sys

from mesa_lm.hub.cli import hub_card_main

if __name__ == "__main__":
    sys.exit(hub_card_main())
