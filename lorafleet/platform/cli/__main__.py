"""`python -m lorafleet.platform.cli`: the same as the `platform` command."""

from lorafleet.platform.cli import main

main()
