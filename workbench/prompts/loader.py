"""The prompt library: collections found in folders, loaded one collection at a time when asked for.

A library is built from the shipped prompts/ folder and the folders in $WORKBENCH_PROMPTS. Building
it reads each file only as far as its `name:`; a collection is parsed, validated and its templates
checked (`validation.load_collection`) when something asks for it (`library.get("coll/id")`,
`"coll/id" in library`, `library.filter(collection=...)`), together with the collection it extends.
So a broken file (or a hostile one: see `files` and `limits`) affects only its own collection, and
its problems name it. Iterating the whole library loads every collection and skips broken ones;
`problems()` and `broken()` say what was skipped and why.

`load_library(paths)` with explicit paths is strict instead: it loads every collection and raises
PromptLibraryError listing every problem (what scripts and tests that name their files want).
"""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.prompts.files import (
    CollectionFileError,
    CollectionText,
    find_collection_files,
    read_collection_text,
)
from workbench.prompts.schema import Collection, LibraryPrompt, PromptLibraryError
from workbench.prompts.validation import load_collection

PROMPTS_ENV = "WORKBENCH_PROMPTS"


class Library:
    """The collections of some files and folders, addressable by collection/prompt-id, loaded when first used."""

    def __init__(self, paths: list[Path], *, source: str = "the command line", every_variant: bool = False,
                 fallback: Library | None = None) -> None:
        """Find the collection files under `paths` and read their names (nothing is validated yet).

        `every_variant` checks every grid variant of a prompt when its collection loads (else the first);
        `fallback` is where `extends` looks for a collection these paths do not have.
        """
        files, refused = find_collection_files(paths, source)
        self._every_variant = every_variant
        self._fallback = fallback
        self._files: dict[str, Path] = {}  # collection name -> its file; the first file with a name keeps it
        self._texts: dict[Path, CollectionText] = {}
        self._nameless: list[Path] = []  # files whose name could not be read: broken, loaded for their problems
        self._problems: dict[Path, list[str]] = {path: [problem] for path, problem in refused}
        self._loaded: dict[str, Collection] = {}
        # One LibraryPrompt per prompt, made when its collection loads: `get` returns the same object every time.
        self._by_id: dict[str, dict[str, LibraryPrompt]] = {}
        self._loading: list[str] = []
        self._lock = threading.RLock()  # panels load from worker threads; loading a parent re-enters
        for file in files:
            try:
                text = read_collection_text(file)
            except CollectionFileError as exc:
                self._problems[file] = [str(exc)]
                continue
            self._texts[file] = text
            if text.name is None:
                self._nameless.append(file)
            elif text.name in self._files:
                self._problems[file] = [f"{file}: collection name {text.name!r} is already used by "
                                        f"{self._files[text.name]}; rename one"]
            else:
                self._files[text.name] = file

    # -- collections ------------------------------------------------------------------------------

    @property
    def collections(self) -> Mapping[str, tuple[Collection, Path]]:
        """Collection name -> (collection, file); the names are known at once, a collection loads when looked up."""
        return _Collections(self)

    def files(self) -> dict[str, Path]:
        """Every collection name found and its file, without loading anything."""
        return dict(self._files)

    def collection(self, name: str) -> Collection:
        """A collection by name, loaded (with the one it extends) on first use; PromptLibraryError if it is broken."""
        if name not in self._files:
            close = difflib.get_close_matches(name, list(self._files), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise WorkbenchError(f"no prompt collection {name!r} in the library{hint}{self._unread_note()} "
                                 "(see `workbench prompts list`)")
        collection = self._load(name)
        if collection is None:
            raise PromptLibraryError(self._problems[self._files[name]])
        return collection

    def _load(self, name: str) -> Collection | None:
        with self._lock:
            return self._load_locked(name)

    def _load_locked(self, name: str) -> Collection | None:
        if name in self._loaded:
            return self._loaded[name]
        path = self._files[name]
        if path in self._problems:
            return None
        self._loading.append(name)
        try:
            collection, problems = load_collection(path, find_parent=self._parent, every_variant=self._every_variant,
                                                   source=self._texts[path])
        finally:
            self._loading.pop()
        if collection is not None and collection.name != name:
            collection, problems = None, [f"{path}: the file names its collection twice ({name!r} first); keep one"]
        if collection is None:
            self._problems[path] = problems or [f"{path}: could not be loaded"]
            return None
        self._loaded[name] = collection
        self._by_id[name] = {spec.id: LibraryPrompt(collection, spec, path) for spec in collection.prompts}
        return collection

    def _parent(self, name: str) -> Collection | str:
        """The collection `extends: name` refers to, or why there is none (for load_collection)."""
        if name in self._loading:
            return f"{name!r} extends, through others, the collection that extends it; break the cycle"
        if name in self._files:
            parent = self._load(name)
            return parent if parent is not None else (f"collection {name!r} ({self._files[name]}) does not load; "
                                                      "fix it first")
        if self._fallback is not None and name in self._fallback._files:
            try:
                return self._fallback.collection(name)
            except WorkbenchError:
                return f"collection {name!r} ({self._fallback._files[name]}) does not load; fix it first"
        known = sorted({*self._files, *(self._fallback._files if self._fallback else {})})
        return f"no collection {name!r} loaded (known: {', '.join(known) or 'none'}); name a collection of the library"

    def _unread_note(self) -> str:
        unread = len(self._nameless) + sum(1 for path in self._problems if path not in self._files.values())
        return f" ({unread} file(s) could not be read: see `workbench prompts list`)" if unread else ""

    # -- prompts ------------------------------------------------------------------------------------

    def get(self, ref: str) -> LibraryPrompt:
        """A prompt by its address, collection/prompt-id (only its collection is loaded)."""
        name, _, pid = ref.partition("/")
        collection = self.collection(name) if name in self._files else None
        if collection is not None:
            prompt = self._by_id[name].get(pid)
            if prompt is not None:
                return prompt
            candidates = [f"{name}/{spec.id}" for spec in collection.prompts]
        else:  # a mistyped collection: its close namesakes are loaded to see whether they have the prompt
            names = difflib.get_close_matches(name, list(self._files), n=3, cutoff=0.6)
            candidates = [f"{other}/{pid}" if self._load(other) and pid in self._by_id[other] else f"{other}/..."
                          for other in names]
        close = difflib.get_close_matches(ref, candidates, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise WorkbenchError(f"no prompt {ref!r} in the library{hint}{self._unread_note()} "
                             "(see `workbench prompts list`)")

    def __contains__(self, ref: object) -> bool:
        """Whether the library has this collection/prompt-id; PromptLibraryError when its collection is broken
        (so a broken collection is never mistaken for prompt text)."""
        if not isinstance(ref, str):
            return False
        name, _, pid = ref.partition("/")
        if name not in self._files:
            return False
        self.collection(name)
        return pid in self._by_id[name]

    def __iter__(self) -> Iterator[LibraryPrompt]:
        """Every prompt of every collection that loads (loading them all; see `problems()` for the others)."""
        for name in list(self._files):
            if self._load(name) is not None:
                yield from self._by_id[name].values()

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def broken(self) -> dict[Path, list[str]]:
        """Every file that does not give a collection (loading all of them), with its problems."""
        with self._lock:
            return self._broken_locked()

    def _broken_locked(self) -> dict[Path, list[str]]:
        for name in list(self._files):
            self._load(name)
        for path in self._nameless:
            if path in self._problems or path in self._files.values():
                continue
            collection, problems = load_collection(path, find_parent=self._parent, source=self._texts[path])
            if collection is None:
                self._problems[path] = problems
            elif collection.name in self._files:
                self._problems[path] = [f"{path}: collection name {collection.name!r} is already used by "
                                        f"{self._files[collection.name]}; rename one"]
            else:  # a name written in a way the quick read of `name:` did not follow
                self._files[collection.name] = path
                self._loaded[collection.name] = collection
                self._by_id[collection.name] = {spec.id: LibraryPrompt(collection, spec, path)
                                                for spec in collection.prompts}
        return dict(self._problems)

    def problems(self) -> list[str]:
        """Every problem of every file (loading all collections)."""
        return [problem for problems in self.broken().values() for problem in problems]

    def filter(self, tag: str | None = None, kind: str | None = None, text: str | None = None,
               collection: str | None = None) -> list[LibraryPrompt]:
        """Prompts with a tag (theirs or their collection's), of a kind, containing a text (case-insensitive).

        With `collection`, only that collection is loaded (PromptLibraryError if it is broken).
        """
        if collection is not None:
            chosen = self.collection(collection) if collection in self._files else None
            prompts = list(self._by_id[collection].values()) if chosen else []
        else:
            prompts = list(self)
        found = []
        for prompt in prompts:
            spec = prompt.spec
            if tag and tag not in spec.tags and tag not in prompt.collection.tags:
                continue
            if kind and spec.kind != kind:
                continue
            if text:
                haystack = " ".join([prompt.ref, spec.description, spec.text or "",
                                     *(m.content for m in spec.messages or []), *map(str, spec.variables.values())])
                if text.lower() not in haystack.lower():
                    continue
            found.append(prompt)
        return found

    def frame(self):  # -> pandas.DataFrame
        """One row per prompt: ref, kind, tags, variants, answer space size, perturbations, framings."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "ref": p.ref,
                    "kind": p.spec.kind,
                    "tags": ",".join(dict.fromkeys([*p.collection.tags, *p.spec.tags])),
                    "variants": p.spec.variant_count(),
                    "answers": len(p.spec.answer_space.values()) if p.spec.answer_space else 0,
                    "perturbations": ",".join(p.spec.perturbations),
                    "framings": ",".join(p.spec.framings),
                    "description": p.spec.description,
                }
                for p in self
            ]
        )


class _Collections(Mapping[str, tuple[Collection, Path]]):
    """The library's collections by name: names at once, each collection loaded when looked up."""

    def __init__(self, library: Library) -> None:
        self._library = library

    def __getitem__(self, name: str) -> tuple[Collection, Path]:
        if name not in self._library._files:
            raise KeyError(name)
        return self._library.collection(name), self._library._files[name]

    def __contains__(self, name: object) -> bool:
        return name in self._library._files

    def __iter__(self) -> Iterator[str]:
        return iter(self._library._files)

    def __len__(self) -> int:
        return len(self._library._files)


def default_library_dirs() -> list[Path]:
    """The checkout's prompts/ folder, then every folder in $WORKBENCH_PROMPTS (os.pathsep-separated)."""
    dirs = []
    shipped = Path(__file__).resolve().parents[2] / "prompts"
    if shipped.is_dir():
        dirs.append(shipped)
    for entry in os.environ.get(PROMPTS_ENV, "").split(os.pathsep):
        if entry.strip():
            dirs.append(Path(entry).expanduser())
    return dirs


def collection_files(paths: list[Path]) -> list[Path]:
    """YAML files under the given files or folders, in a stable order (links leaving a folder, pipes and
    missing paths left out: `files.find_collection_files` says why)."""
    return find_collection_files(paths, f"{PROMPTS_ENV} or the command line")[0]


def load_library(paths: list[str | Path] | None = None) -> Library:
    """The default library (prompts/ plus $WORKBENCH_PROMPTS), each collection loaded when asked for; or, with
    `paths`, the collections there, every one loaded now (PromptLibraryError lists every problem)."""
    if paths is None:
        return Library(default_library_dirs(), source=PROMPTS_ENV)
    library = Library([Path(p) for p in paths], every_variant=True)
    problems = library.problems()
    if problems:
        raise PromptLibraryError(problems)
    return library


def validate_paths(paths: list[str | Path] | None = None) -> tuple[int, list[str]]:
    """(number of prompts that loaded, every problem found) for files or folders, every grid variant checked.

    A collection that extends another may name one of the default library's (prompts/ and
    $WORKBENCH_PROMPTS) as well as one among the given paths.
    """
    if not paths:
        library = Library(default_library_dirs(), source=PROMPTS_ENV, every_variant=True)
    else:
        library = Library([Path(p) for p in paths], every_variant=True, fallback=load_library())
    problems = library.problems()
    return sum(1 for _ in library), problems

