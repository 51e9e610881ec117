"""The prompt library: shared YAML collections of probes, validated, filled and rendered per model.

- `schema`: pydantic models of a collection, a prompt, its answer space, label sets and framings
- `answers`: answer extractors (pure string functions an answer space's normaliser names)
- `sandbox`: the one Jinja sandbox every template renders in, with `limits` on time and size per render
- `files`: finding collection files (links leaving a folder refused) and reading their YAML (size and
  alias expansion capped)
- `validation`: one collection file read and validated, with line-numbered problems (`load_collection`)
- `loader`: the library, each collection loaded when asked for (`load_library`, `validate_paths`)
- `fill`: a prompt's templates filled with variables, a perturbation and a framing
- `render`: `render_for_model`, the one function that turns a prompt into what a model receives
- `importers`: published probe sets (model-written-evals JSONL, A/B JSON, CSV) as collections
- `probe_formats`: the readers of those formats, each item turned into a collection entry

This package never imports a backend: the caller passes a model's chat template in.
"""

from __future__ import annotations

from workbench.prompts.answers import (
    ANSWER_EXTRACTORS,
    NO_ANSWER,
    AnswerFn,
    answer_extractor,
    first_line,
    first_number,
    first_word,
    first_words,
    full_text,
)
from workbench.prompts.fill import FilledPrompt, PromptChoices, fill
from workbench.prompts.importers import FORMATS as IMPORT_FORMATS
from workbench.prompts.importers import ImportResult, import_probe_set
from workbench.prompts.limits import RenderLimitError, RenderLimits
from workbench.prompts.loader import (
    PROMPTS_ENV,
    Library,
    collection_files,
    default_library_dirs,
    load_library,
    validate_paths,
)
from workbench.prompts.render import (
    ChatTemplate,
    render_completion,
    render_for_model,
    render_transcript,
    validate_messages,
)
from workbench.prompts.schema import (
    ID_PATTERN,
    LEADING,
    OTHER_ANSWER,
    SEGUE_SLOT,
    AnswerSpace,
    Collection,
    Framing,
    IntegerRange,
    LabelSet,
    LibraryPrompt,
    MessageTemplate,
    PromptLibraryError,
    PromptSpec,
)
from workbench.prompts.validation import load_collection

__all__ = [
    "PromptChoices",
    "ANSWER_EXTRACTORS",
    "ID_PATTERN",
    "LEADING",
    "NO_ANSWER",
    "OTHER_ANSWER",
    "PROMPTS_ENV",
    "SEGUE_SLOT",
    "AnswerFn",
    "AnswerSpace",
    "ChatTemplate",
    "Collection",
    "FilledPrompt",
    "Framing",
    "IMPORT_FORMATS",
    "ImportResult",
    "IntegerRange",
    "LabelSet",
    "Library",
    "LibraryPrompt",
    "MessageTemplate",
    "PromptLibraryError",
    "PromptSpec",
    "RenderLimitError",
    "RenderLimits",
    "answer_extractor",
    "collection_files",
    "default_library_dirs",
    "fill",
    "import_probe_set",
    "first_line",
    "first_number",
    "first_word",
    "first_words",
    "full_text",
    "load_collection",
    "load_library",
    "render_completion",
    "render_for_model",
    "render_transcript",
    "validate_messages",
    "validate_paths",
]
