"""Prompt templates that ask an LLM to describe a category, and their rendering into chat messages."""

from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path

import yaml

from wvlp.data.sources import ClassInfo

DEFAULT_PROMPTS = Path(__file__).with_name("prompts.yaml")
_TEMPLATE_KEYS = {"id", "template", "aspect"}
_FILE_KEYS = {"system", "templates"}


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt: a unique id, a template with a `{label}` slot, the aspect it asks about, an optional system text."""

    id: str
    template: str
    aspect: str
    system: str | None = None


def _fields(template: str, template_id: str) -> set[str]:
    try:
        return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    except ValueError as err:
        raise ValueError(f"prompt template {template_id!r}: malformed braces in {template!r}: {err}") from err


def load_prompts(path: str | os.PathLike | None = None) -> list[PromptTemplate]:
    """The templates of a prompts YAML file (default: the packaged `prompts.yaml`), validated."""
    path = Path(path) if path is not None else DEFAULT_PROMPTS
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("templates"), list) or not data["templates"]:
        raise ValueError(f"{path}: expected a mapping with a non-empty 'templates' list")
    unknown = set(data) - _FILE_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(_FILE_KEYS)}")
    system = data.get("system")
    if system is not None and (not isinstance(system, str) or not system.strip()):
        raise ValueError(f"{path}: 'system' must be a non-empty string when given")
    prompts: list[PromptTemplate] = []
    seen: set[str] = set()
    for position, entry in enumerate(data["templates"]):
        template_id = entry.get("id") if isinstance(entry, dict) else None
        where = f"{path}: prompt template {template_id!r}" if template_id else f"{path}: template #{position}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping with keys {sorted(_TEMPLATE_KEYS)}")
        if set(entry) != _TEMPLATE_KEYS:
            missing, extra = _TEMPLATE_KEYS - set(entry), set(entry) - _TEMPLATE_KEYS
            raise ValueError(f"{where}: missing key(s) {sorted(missing)}, unknown key(s) {sorted(extra)}")
        if not all(isinstance(entry[k], str) and entry[k].strip() for k in _TEMPLATE_KEYS):
            raise ValueError(f"{where}: id, template and aspect must be non-empty strings")
        if template_id in seen:
            raise ValueError(f"{where}: duplicate id")
        if "|" in template_id:
            raise ValueError(f"{where}: ids may not contain '|' (it separates the parts of generation keys)")
        seen.add(template_id)
        fields = _fields(entry["template"], template_id)
        if "label" not in fields:
            raise ValueError(f"{where}: the template has no {{label}} slot")
        if fields - {"label"}:
            raise ValueError(f"{where}: unknown field(s) {sorted(fields - {'label'})}; only {{label}} is filled")
        prompts.append(PromptTemplate(template_id, entry["template"].strip(), entry["aspect"].strip(), system))
    return prompts


def render_user_prompt(template: PromptTemplate, cls: ClassInfo, with_gloss: bool = False) -> str:
    """The user message for `cls`: the filled template, after the WordNet gloss when `with_gloss`."""
    text = template.template.format(label=cls.prompt_name)
    if with_gloss and cls.gloss:
        # The gloss disambiguates senses (a "crane" bird vs. machine) without an a/an guess for the label.
        text = f'Here, "{cls.prompt_name}" means {cls.gloss.rstrip(".")}.\n{text}'
    return text


def render(template: PromptTemplate, cls: ClassInfo, with_gloss: bool = False) -> list[dict[str, str]]:
    """Chat messages (system when the template has one, then user) asking for a description of `cls`."""
    messages = [{"role": "system", "content": template.system}] if template.system else []
    messages.append({"role": "user", "content": render_user_prompt(template, cls, with_gloss)})
    return messages
