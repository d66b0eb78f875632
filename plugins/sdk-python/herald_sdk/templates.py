"""Message templates (contract 0.3.0): the instance's `[plugins.<name>.templates]` in
herald.toml, in Jinja2 syntax, rendered by the host against the current event, its run and, at
the end of a run, the run's summary (PLAY RECAP, failed hosts with their tasks and messages,
`set_stats`, `run_url`). A plugin gives its defaults from `Plugin.default_templates()`; a user's
template of the same name replaces the default exactly.

    def handle(self, event, attempt):
        text = templates.text(event, "failure_text", lambda: f"{event.host} failed")
        ...

A failed render raises `TemplateError`, which `export` answers as a permanent failure carrying
the template's message (the host does the same whatever `handle` returns).

The context a template sees is documented in docs/configuration.md ("Templates").
"""
from __future__ import annotations

from . import _host
from .config import ConfigError


class TemplateError(Exception):
    """A template failed or a limit stopped it; the message names the template and its line.
    The host answers the event with a permanent failure carrying it, whatever `handle` returns."""


def configured() -> list[str]:
    """The names of the templates the user configured for this instance (not the defaults)."""
    return _host.templates_configured()


def user_configured(name: str) -> bool:
    """Whether the user configured template `name` for this instance."""
    return name in configured()


def set_defaults(defaults: dict[str, str]) -> None:
    """Gives the host the plugin's default templates (name → source); raises `ConfigError`
    naming the template, line and column that do not compile. `export` calls it after the
    plugin is built, with `Plugin.default_templates()`."""
    if not defaults:
        return
    why = _host.templates_set_defaults([(str(k), str(v)) for k, v in defaults.items()])
    if why is not None:
        raise ConfigError(why)


def render(event, name: str) -> str | None:
    """Template `name` (the user's, else the plugin's default) rendered against `event`; None
    when neither has one. Raises `TemplateError` when the render fails."""
    return _host.templates_render(name, event)


def text(event, name: str, fallback) -> str:
    """The text of one human-readable field: template `name` rendered by the host, else
    `fallback()` (no template of that name). Raises `TemplateError` when the render fails."""
    rendered = render(event, name)
    return fallback() if rendered is None else rendered
