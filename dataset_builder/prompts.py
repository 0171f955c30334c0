"""Prompt templates that ask an LLM to describe a category, and their rendering into chat messages or completions.

Chat prompting (`render`) sends the system text and the filled `template`; completion prompting
(`render_completion`, for base models without a chat template) sends the filled `completion` heading for the model
to continue, after few-shot examples of other objects when asked. `template_hash` fingerprints the text either
mode sends before the label is filled in, for provenance.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path

import yaml

from wvlp.data.sources import ClassInfo

DEFAULT_PROMPTS = Path(__file__).with_name("prompts.yaml")
# The few-shot blocks are separated by a blank line; each block is a heading line, then its answer on one line.
COMPLETION_SEPARATOR = "\n\n"
_TEMPLATE_KEYS = {"id", "template", "aspect"}
_OPTIONAL_TEMPLATE_KEYS = {"completion", "examples"}
_FILE_KEYS = {"system", "templates", "few_shot", "stop"}


@dataclass(frozen=True)
class FewShotExample:
    """One hand-written answer of a completion template for an object that is not being described."""

    label: str
    text: str
    gloss: str | None = None


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt: a unique id, a template with a `{label}` slot, the aspect it asks about, an optional system text.

    For completion prompting: `completion`, a heading with a `{label}` slot that the model continues; `examples`,
    its answers for the few-shot objects; `stop`, the strings that end a completion.
    """

    id: str
    template: str
    aspect: str
    system: str | None = None
    completion: str | None = None
    examples: tuple[FewShotExample, ...] = ()
    stop: tuple[str, ...] = ()


def _fields(template: str, template_id: str) -> set[str]:
    try:
        return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    except ValueError as err:
        raise ValueError(f"prompt template {template_id!r}: malformed braces in {template!r}: {err}") from err


def _check_label_slot(text: str, template_id: str, where: str, key: str) -> None:
    fields = _fields(text, template_id)
    if "label" not in fields:
        raise ValueError(f"{where}: the {key} has no {{label}} slot")
    if fields - {"label"}:
        raise ValueError(f"{where}: unknown field(s) {sorted(fields - {'label'})}; only {{label}} is filled")


def _few_shot_glosses(data: dict, path: Path) -> dict[str, str | None]:
    few_shot = data.get("few_shot") or {}
    if not isinstance(few_shot, dict) or not all(isinstance(k, str) and k.strip() for k in few_shot):
        raise ValueError(f"{path}: 'few_shot' must map each few-shot object's name to its gloss (or null)")
    for name, gloss in few_shot.items():
        if gloss is not None and (not isinstance(gloss, str) or not gloss.strip()):
            raise ValueError(f"{path}: few_shot object {name!r}: the gloss must be a non-empty string or null")
    return {name.strip(): gloss.strip() if gloss else None for name, gloss in few_shot.items()}


def _stop(data: dict, path: Path) -> tuple[str, ...]:
    stop = data.get("stop", [])
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise ValueError(f"{path}: 'stop' must be a list of non-empty strings, got {stop!r}")
    return tuple(stop)


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
    glosses, stop = _few_shot_glosses(data, path), _stop(data, path)
    prompts: list[PromptTemplate] = []
    seen: set[str] = set()
    for position, entry in enumerate(data["templates"]):
        template_id = entry.get("id") if isinstance(entry, dict) else None
        where = f"{path}: prompt template {template_id!r}" if template_id else f"{path}: template #{position}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping with keys {sorted(_TEMPLATE_KEYS)}")
        if not _TEMPLATE_KEYS <= set(entry) <= _TEMPLATE_KEYS | _OPTIONAL_TEMPLATE_KEYS:
            missing, extra = _TEMPLATE_KEYS - set(entry), set(entry) - _TEMPLATE_KEYS - _OPTIONAL_TEMPLATE_KEYS
            raise ValueError(f"{where}: missing key(s) {sorted(missing)}, unknown key(s) {sorted(extra)}")
        if not all(isinstance(entry[k], str) and entry[k].strip() for k in _TEMPLATE_KEYS):
            raise ValueError(f"{where}: id, template and aspect must be non-empty strings")
        if template_id in seen:
            raise ValueError(f"{where}: duplicate id")
        if "|" in template_id:
            raise ValueError(f"{where}: ids may not contain '|' (it separates the parts of generation keys)")
        seen.add(template_id)
        _check_label_slot(entry["template"], template_id, where, "template")
        completion = entry.get("completion")
        if completion is not None:
            if not isinstance(completion, str) or not completion.strip():
                raise ValueError(f"{where}: completion must be a non-empty string when given")
            _check_label_slot(completion, template_id, where, "completion")
            completion = completion.strip()
        examples = entry.get("examples") or {}
        if not isinstance(examples, dict) or not all(isinstance(t, str) and t.strip() for t in examples.values()):
            raise ValueError(f"{where}: examples must map few-shot object names to non-empty answers")
        if examples and completion is None:
            raise ValueError(f"{where}: examples need a completion heading to answer")
        strangers = sorted(set(examples) - set(glosses))
        if strangers:
            raise ValueError(f"{where}: example object(s) {strangers} are not listed under the file's 'few_shot'")
        prompts.append(
            PromptTemplate(
                template_id,
                entry["template"].strip(),
                entry["aspect"].strip(),
                system,
                completion,
                tuple(FewShotExample(name, text.strip(), glosses[name]) for name, text in examples.items()),
                stop,
            )
        )
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


def _names(cls: ClassInfo) -> list[str]:
    """Every name of `cls` (prompt name, the parts of its name, synonyms), lower-cased."""
    names = [cls.prompt_name, cls.name, *re.split(r"\s*/\s*", cls.name), *cls.synonyms]
    return list(dict.fromkeys(n.strip().lower() for n in names if n and n.strip()))


def _mentions(text: str, name: str) -> bool:
    """Whether `text` has `name` as whole words, singular or plural ("bag", "bags"), ignoring case."""
    stem = re.escape(name.removesuffix("s"))
    return re.search(rf"(?<!\w){stem}(?:e?s)?(?!\w)", text, re.IGNORECASE) is not None


def few_shot_examples(template: PromptTemplate, cls: ClassInfo) -> list[FewShotExample]:
    """The template's examples that are about other objects than `cls` and never mention it."""
    names = _names(cls)
    kept = []
    for example in template.examples:
        words = set(re.findall(r"\w+", example.label.lower()))
        overlaps = any(words & set(re.findall(r"\w+", name)) for name in names)
        mentioned = any(_mentions(f"{example.label} {example.gloss or ''} {example.text}", n) for n in names)
        if not overlaps and not mentioned:
            kept.append(example)
    return kept


def _completion_block(template: PromptTemplate, label: str, gloss: str | None, with_gloss: bool) -> str:
    heading = template.completion.format(label=label)
    if with_gloss and gloss:
        return f"{label[:1].upper()}{label[1:]}: {gloss.rstrip('.')}.\n{heading}"
    return heading


def render_completion(
    template: PromptTemplate, cls: ClassInfo, with_gloss: bool = False, few_shot: bool = False
) -> str:
    """The completion prompt for `cls`: its filled heading and a newline (after its gloss when `with_gloss`),
    preceded with `few_shot` by the examples of other objects, blocks separated by `COMPLETION_SEPARATOR`.

    The answer starts on a line of its own: a base model given a bare heading ending in ":" starts with a newline,
    which the stop string "\n" would turn into an empty answer.
    """
    if template.completion is None:
        raise ValueError(
            f"prompt template {template.id!r} has no `completion` heading, needed by prompting: completion"
        )
    blocks = []
    if few_shot:
        for example in few_shot_examples(template, cls):
            blocks.append(f"{_completion_block(template, example.label, example.gloss, with_gloss)}\n{example.text}")
    blocks.append(_completion_block(template, cls.prompt_name, cls.gloss, with_gloss) + "\n")
    return COMPLETION_SEPARATOR.join(blocks)


def template_hash(template: PromptTemplate, prompting: str, with_gloss: bool = False, few_shot: bool = False) -> str:
    """12 hex digits of sha256 over the text `prompting` sends for this template before the label is filled in."""
    # A placeholder class: no few-shot example is left out, so the hash covers every example the template can send.
    slot = ClassInfo(label=-1, class_id="{label}", name="{label}", prompt_name="{label}", gloss="{gloss}")
    if prompting == "chat":
        sent = {"system": template.system, "user": render_user_prompt(template, slot, with_gloss)}
    elif prompting == "completion":
        sent = {"prompt": render_completion(template, slot, with_gloss, few_shot), "stop": list(template.stop)}
    else:
        raise ValueError(f"prompting {prompting!r} is unknown: expected 'chat' or 'completion'")
    payload = json.dumps({"prompting": prompting, **sent}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]
