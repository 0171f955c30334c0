"""Versioned class-name and template files (evaluation/prompts/): the fixed inputs of zero-shot numbers."""

from dataclasses import dataclass
from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
FASHION_MNIST_CLASSNAMES = PROMPTS_DIR / "fashion_mnist_classnames.txt"
DEFAULT_TEMPLATES = PROMPTS_DIR / "templates_v1.txt"


@dataclass(frozen=True)
class ClassNames:
    """Label names (as in the dataset's ClassLabel, label id = position) and the names put into the templates."""

    label_names: tuple[str, ...]
    prompt_names: tuple[str, ...]
    path: str | None = None


def _lines(path: Path) -> list[str]:
    """Non-empty lines that are not `#` comments."""
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    return [line.rstrip("\n") for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def load_classnames(path: str | Path) -> ClassNames:
    """Reads `<label name>[TAB<prompt name>]` lines; the line order is the label order."""
    path = Path(path)
    labels, prompts = [], []
    for number, line in enumerate(_lines(path)):
        label, _, prompt = line.partition("\t")
        if not label.strip():
            raise ValueError(f"{path}: class line {number} has an empty label name")
        labels.append(label.strip())
        prompts.append((prompt or label).strip())
    if len(set(labels)) != len(labels):
        raise ValueError(f"{path}: duplicate label names {sorted({n for n in labels if labels.count(n) > 1})}")
    return ClassNames(tuple(labels), tuple(prompts), display_path(path))


def load_templates(path: str | Path) -> tuple[str, ...]:
    """Reads one template per line; each must contain exactly one `{}`."""
    path = Path(path)
    templates = tuple(line.strip() for line in _lines(path))
    if not templates:
        raise ValueError(f"{path} holds no templates")
    for template in templates:
        if template.count("{}") != 1:
            raise ValueError(f"{path}: template {template!r} must contain exactly one '{{}}'")
    return templates


def classnames_for(label_names: list[str] | tuple[str, ...], path: str | Path | None = None) -> ClassNames:
    """The class names of a dataset: from `path` (checked against its labels), the packaged file if it matches, or the labels."""
    label_names = tuple(label_names)
    candidates = [Path(path)] if path is not None else [FASHION_MNIST_CLASSNAMES]
    for candidate in candidates:
        names = load_classnames(candidate)
        if names.label_names == label_names:
            return names
        if path is not None:
            raise ValueError(
                f"classnames file {candidate}: its label names {list(names.label_names)} differ from the "
                f"dataset's labels {list(label_names)} (same names, same order required)"
            )
    return ClassNames(label_names, label_names, None)


def display_path(path: Path) -> str:
    """`path` relative to the repository when inside it (stable across checkouts), else absolute."""
    path = path.resolve()
    try:
        return str(path.relative_to(PROMPTS_DIR.parent.parent))
    except ValueError:
        return str(path)
