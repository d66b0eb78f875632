"""Herald's chat sink, in Python: failures and run summaries to a Mattermost, Rocket.Chat or
Discord incoming webhook (see README.md)."""
from herald_sdk import export

from chat import Chat

Handler = export(Chat)
