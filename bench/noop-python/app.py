"""The no-op sink in Python (bench part 14): answers every event ok without looking at it.

Built like the shipped Python plugins (plugins/chat): the SDK's `Plugin` and `export`, through
`python -m herald_sdk.build`, so a call pays what any SDK plugin's call pays (the event wrapped
in an `EventRef`, the outcome turned into the host's type) and nothing of its own.
"""
from herald_sdk import Plugin, export, ok


class Noop(Plugin):
    def handle(self, event, attempt):
        return ok()


Handler = export(Noop)
