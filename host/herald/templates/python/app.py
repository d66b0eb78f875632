"""The component's entry point: componentize-py builds this module; it only exports the plugin."""
from herald_sdk import export

from sink import Sink

Handler = export(Sink)
