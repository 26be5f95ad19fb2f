"""``python -m bot.cli``: the ``deploybot`` command."""

from bot.cli import main

main()
