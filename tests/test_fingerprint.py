"""The code fingerprint: it follows every edit that can change an answer, and nothing else.

Variants of one module are written to files and imported for real, so the
fingerprint reads them through the same source lookup a user's code goes
through. A fixed sample module is fingerprinted under every installed Python,
whose syntax trees differ, and pinned to golden digests.
"""

from __future__ import annotations
import __future__

import ast
import contextlib
import functools
import importlib
import json
import linecache
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pydantic
import pytest

from instructor_cache import _fingerprint, _source, make_cache_key
from instructor_cache._fingerprint import code_fingerprint, is_user_code
from tests._fingerprint_samples import sample

ROOT = Path(__file__).resolve().parents[1]
PYTHONS = [
    f"/root/.pyenv/versions/{v}/bin/python" for v in ("3.10.13", "3.11.7", "3.12.1", "3.13.0")
]

# The sample's fingerprints: a change here means every user's keys change.
GOLDEN = {
    "extract": "7f8d1c42136bdfbacf5208de7cf0166f7888af9419cedb01cafafe424ea958ca",
    "render": "223354a39c02f853c702ae0d954abaf29f84b92dcd552ab446b42aead2741cbc",
    "normalize": "5c5f1e928ac7c2128016d1f78ff68117d58599f47c1537b3317f2eb48a7740f6",
    "gather": "1e1d1b4d3971c578716be8010fc49f2a04be5954fe55eef7c10aa1fbb9096863",
    "countdown": "b935258f7da4413b6fbbb1c8f01ce9b8c64c74189e1bfba6f6b0a6b9e0dad9e4",
    "is_even": "f7a5eaffd5629aec60a5735400761757a45434adf6e2196ac40728a00f6101cf",
    "greet": "e14fc31b4d2193f16acf3aa146fd946d22a9a8cb320a9fc085ec2beae90d2c5a",
    "extractor": "22fdd7f195fd88c54e62e4df482a289d85d381d1692c9f666b6ce3fd45556928",
    "partial": "1763239aabac3c772128a95fef34b517e75976869b25704bfcf6a0e83c71e37b",
}

MODULE = """
import enum

import PROMPTS
from instructor_cache import instructor_cache


FUNCTION


def helper(prompt: str, text: str) -> str:
    return prompt + " " + text.strip()


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


SYSTEM_PROMPT = "Extract the name of the user."
LIMITS = (1, 2)
MODE = Mode.FAST
"""

FUNCTION = """
@instructor_cache(ttl=60)
def extract(text: str, *, style: str = "formal") -> str:
    if len(text) > 200:
        text = text[:200]
    prompt = f"{SYSTEM_PROMPT} Style: {style}. {PROMPTS.PREFIX}"
    return helper(prompt, text) + str(LIMITS) + MODE.value
"""

REFORMATTED = {
    "single quotes": """
@instructor_cache(ttl=60)
def extract(text: str, *, style: str = 'formal') -> str:
    if len(text) > 200:
        text = text[:200]
    prompt = f'{SYSTEM_PROMPT} Style: {style}. {PROMPTS.PREFIX}'
    return helper(prompt, text) + str(LIMITS) + MODE.value
""",
    "line breaks and trailing commas": """
@instructor_cache(ttl=60)
def extract(
    text: str,
    *,
    style: str = "formal",
) -> str:
    if (
        len(text)
        > 200
    ):
        text = text[
            :200
        ]
    prompt = (
        f"{SYSTEM_PROMPT} "
        "Style: "
        f"{style}. {PROMPTS.PREFIX}"
    )
    return (
        helper(
            prompt,
            text,
        )
        + str(LIMITS)
        + MODE.value
    )
""",
    "comments": """
# The extractor.
@instructor_cache(ttl=60)  # an hour would do
def extract(text: str, *, style: str = "formal") -> str:  # noqa: D103
    # Long texts cost more.
    if len(text) > 200:
        text = text[:200]  # keep the head
    prompt = f"{SYSTEM_PROMPT} Style: {style}. {PROMPTS.PREFIX}"
    return helper(prompt, text) + str(LIMITS) + MODE.value  # done
""",
    "a docstring": '''
@instructor_cache(ttl=60)
def extract(text: str, *, style: str = "formal") -> str:
    """Extract a user from text.

    The docstring documents; it does not change an answer.
    """
    if len(text) > 200:
        text = text[:200]
    prompt = f"{SYSTEM_PROMPT} Style: {style}. {PROMPTS.PREFIX}"
    return helper(prompt, text) + str(LIMITS) + MODE.value
''',
    "other decorator arguments": """
@instructor_cache(ttl=3600, namespace="users")
def extract(text: str, *, style: str = "formal") -> str:
    if len(text) > 200:
        text = text[:200]
    prompt = f"{SYSTEM_PROMPT} Style: {style}. {PROMPTS.PREFIX}"
    return helper(prompt, text) + str(LIMITS) + MODE.value
""",
    "nested in a block": """
if True:

    @instructor_cache(ttl=60)
    def extract(text: str, *, style: str = "formal") -> str:
        if len(text) > 200:
            text = text[:200]
        prompt = f"{SYSTEM_PROMPT} Style: {style}. {PROMPTS.PREFIX}"
        return helper(prompt, text) + str(LIMITS) + MODE.value
""",
    "a u-prefixed string": """
@instructor_cache(ttl=60)
def extract(text: str, *, style: str = u"formal") -> str:
    if len(text) > 200:
        text = text[:200]
    prompt = f"{SYSTEM_PROMPT} Style: {style}. {PROMPTS.PREFIX}"
    return helper(prompt, text) + str(LIMITS) + MODE.value
""",
}

# Each edit can change an answer: (what it replaces, with what).
EDITS = {
    "a string literal in the body": ("Style: {style}", "Tone: {style}"),
    "an operator": ("len(text) > 200", "len(text) >= 200"),
    "a called helper's body": ("text.strip()", "text.lower()"),
    "a prompt constant defined after the function": ("the name of the user", "the user's name"),
    "a tuple constant": ("LIMITS = (1, 2)", "LIMITS = (1, 3)"),
    "an enum constant": ("MODE = Mode.FAST", "MODE = Mode.SLOW"),
    "an enum member's value": ('FAST = "fast"', 'FAST = "quick"'),
    "a default argument": ('style: str = "formal"', 'style: str = "casual"'),
}


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], ModuleType]]:
    """Import source text as a fresh module from a real file, so its source can be read back."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def load(source: str) -> ModuleType:
        name = f"fp_sample_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(source)
        importlib.invalidate_caches()
        names.append(name)
        return importlib.import_module(name)

    yield load
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """Install source text as a module in a site-packages folder; return its name."""
    site_packages = tmp_path / "site-packages"
    site_packages.mkdir()
    monkeypatch.syspath_prepend(str(site_packages))

    def install(source: str) -> str:
        name = f"fp_library_{uuid.uuid4().hex}"
        (site_packages / f"{name}.py").write_text(source)
        importlib.invalidate_caches()
        return name

    return install


@pytest.fixture
def prompts(load: Callable[[str], ModuleType]) -> ModuleType:
    """A user module of prompt constants that the extract variants read as ``PROMPTS.PREFIX``."""
    return load('PREFIX = "Be careful."\n')


def module_source(function: str, prompts: ModuleType) -> str:
    return MODULE.replace("FUNCTION", function).replace("PROMPTS", prompts.__name__)


def fingerprint_of(load: Callable[[str], ModuleType], source: str) -> str:
    return code_fingerprint(load(source).extract)


@pytest.mark.parametrize("variant", list(REFORMATTED))
def test_reformatting_commenting_or_documenting_keeps_the_fingerprint(
    load: Callable[[str], ModuleType], prompts: ModuleType, variant: str
) -> None:
    """Quotes, line breaks, comments, a docstring or decorator arguments change no answer."""
    base = fingerprint_of(load, module_source(FUNCTION, prompts))
    assert fingerprint_of(load, module_source(REFORMATTED[variant], prompts)) == base


def test_a_method_with_the_same_code_has_the_same_fingerprint(
    load: Callable[[str], ModuleType], prompts: ModuleType
) -> None:
    """A staticmethod in a class body is the same code as the function at module level."""
    base = fingerprint_of(load, module_source(FUNCTION, prompts))
    nested = "class Holder:\n" + "".join(
        f"    {line}\n" if line else "\n" for line in ("@staticmethod\n" + FUNCTION).splitlines()
    )
    module = load(module_source(nested, prompts))
    assert code_fingerprint(module.Holder.extract) == base


def test_ruff_format_keeps_the_fingerprint(
    load: Callable[[str], ModuleType], prompts: ModuleType, tmp_path: Path
) -> None:
    """Code run through the real ruff formatter fingerprints like the code before it."""
    messy = module_source(
        "@instructor_cache( ttl = 60, )\ndef extract(text:str,*,style:str='formal')->str:\n"
        "  if len( text )>200 : text=text[ :200 ]\n"
        "  prompt=(f'{SYSTEM_PROMPT} Style: {style}. '\n"
        "     f'{PROMPTS.PREFIX}')\n"
        "  return helper(prompt,text,)+str( LIMITS )+MODE.value\n",
        prompts,
    )
    path = tmp_path / "messy_copy.py"
    path.write_text(messy)
    subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--isolated", "--quiet", str(path)], check=True
    )
    formatted = path.read_text()
    assert formatted != messy
    assert fingerprint_of(load, formatted) == fingerprint_of(load, messy)
    assert fingerprint_of(load, formatted) == fingerprint_of(load, module_source(FUNCTION, prompts))


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edit_that_can_change_the_answer_changes_the_fingerprint(
    load: Callable[[str], ModuleType], prompts: ModuleType, edit: str
) -> None:
    """The body's literals and operators, helpers and the constants read all count."""
    source = module_source(FUNCTION, prompts)
    old, new = EDITS[edit]
    assert old in source
    assert fingerprint_of(load, source.replace(old, new)) != fingerprint_of(load, source)


def test_a_constant_of_an_imported_user_module_is_part_of_the_fingerprint(
    load: Callable[[str], ModuleType], prompts: ModuleType
) -> None:
    """Moving the prompt to a prompts module and editing it there changes the fingerprint."""
    other = load('PREFIX = "Be brief."\n')
    assert fingerprint_of(load, module_source(FUNCTION, other)) != fingerprint_of(
        load, module_source(FUNCTION, prompts)
    )


def test_a_class_or_flag_constant_is_part_of_the_fingerprint(
    load: Callable[[str], ModuleType],
) -> None:
    """A prompt kept on a class, or a combination of flags, is read like a module constant."""
    source = (
        "import enum\n\nclass Prompts:\n    SYSTEM = 'Find the user.'\n\n"
        "class Seen(enum.Flag):\n    NAME = 1\n    AGE = 2\n\nWANTED = Seen.NAME | Seen.AGE\n\n"
        "def extract(text):\n    return Prompts.SYSTEM + text + str(WANTED)\n"
    )
    base = fingerprint_of(load, source)
    assert fingerprint_of(load, source.replace("Find", "Locate")) != base
    assert fingerprint_of(load, source.replace("Seen.NAME | Seen.AGE", "Seen.NAME")) != base


METHODS = """
class Extractor:
    PROMPT = "Find the user."

    def clean(self, text):
        return text.strip()

    def extract(self, text):
        return self.PROMPT + self.clean(text)


def shout(text):
    return text.upper()


def extract(text, style=shout):
    return style(text) + EXTRACTOR.clean(text)


EXTRACTOR = Extractor()
"""


@pytest.mark.parametrize(
    ("edit", "function"),
    [
        pytest.param(("Find", "Locate"), "Extractor.extract", id="a class constant read by self"),
        pytest.param(("strip", "lower"), "Extractor.extract", id="a method called on self"),
        pytest.param(("upper", "lower"), "extract", id="a user function as a default"),
        pytest.param(("strip", "lower"), "extract", id="a method of a module-level instance"),
    ],
)
def test_code_reached_through_self_defaults_and_instances_counts(
    load: Callable[[str], ModuleType], edit: tuple[str, str], function: str
) -> None:
    """Class constants and methods a function reaches, and user functions it holds, count."""

    def fingerprint(source: str) -> str:
        return code_fingerprint(functools.reduce(getattr, function.split("."), load(source)))

    assert fingerprint(METHODS.replace(*edit)) != fingerprint(METHODS)


def test_a_prompt_of_hundreds_of_parts_is_fingerprinted_from_its_source(
    load: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long chain of ``+`` nests deeper than the recursion limit, yet needs no fallback."""
    module = load("def extract(text):\n    return text" + ' + "part"' * 900 + "\n")
    fingerprint = code_fingerprint(module.extract)
    monkeypatch.setattr(_fingerprint, "_INTERPRETER", "another Python")
    assert code_fingerprint(module.extract) == fingerprint


UNREADABLE = {
    "a class attribute": (
        "class Meta(type):\n    def __getattr__(cls, name):\n        raise RuntimeError(name)\n\n"
        "class Config(metaclass=Meta):\n    pass\n\n"
        "def extract(text):\n    return Config.PROMPT + text\n"
    ),
    "a callable in a closure cell": (
        "class Odd:\n    __wrapped__ = property(lambda self: 1 / 0)\n\n"
        "    def __call__(self, text):\n        return text\n\n"
        "def make(style):\n    def extract(text):\n        return style(text)\n\n"
        "    return extract\n\n"
        "extract = make(Odd())\n"
    ),
}


@pytest.mark.parametrize("source", list(UNREADABLE))
def test_a_value_that_fails_to_read_does_not_spoil_the_fingerprint(
    load: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """A value that raises when examined is marked unreadable; the source still counts."""
    module = load(UNREADABLE[source])
    fingerprint = code_fingerprint(module.extract)
    monkeypatch.setattr(_fingerprint, "_INTERPRETER", "another Python")
    assert code_fingerprint(module.extract) == fingerprint


def test_an_unchanged_module_gets_the_same_fingerprint_under_another_name(
    load: Callable[[str], ModuleType], prompts: ModuleType
) -> None:
    """Two imports of the same text are the same code, so they get the same fingerprint."""
    source = module_source(FUNCTION, prompts)
    assert fingerprint_of(load, source) == fingerprint_of(load, source)


def test_the_sample_matches_its_golden_fingerprints() -> None:
    """A change to the walk shows here: it changes every user's keys."""
    assert {name: code_fingerprint(fn) for name, fn in sample.SAMPLES.items()} == GOLDEN


@pytest.mark.parametrize("python", PYTHONS, ids=lambda path: path.split("/")[-3])
def test_the_sample_fingerprints_alike_on_every_python(python: str) -> None:
    """Pythons 3.10 to 3.13 parse the sample into different trees, yet agree on every digest."""
    if not os.path.exists(python):
        print(f"{python} is not installed; the CI machine has it")
        pytest.skip(f"{python} is not installed")
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [python, "-B", "-m", "tests._fingerprint_samples.report"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(result.stdout) == GOLDEN


def test_the_nested_format_spec_of_python_3_12_fingerprints_like_the_others() -> None:
    """3.12 adds an empty string part to f"{x!r:>{w}}"'s format spec; the walk drops it."""
    tree = ast.parse('f"{x!r:>{w}}"', mode="eval")
    quirk = ast.parse('f"{x!r:>{w}}"', mode="eval")
    spec = quirk.body.values[0].format_spec  # type: ignore[attr-defined]
    spec.values = [v for v in spec.values if not isinstance(v, ast.Constant) or v.value]
    spec.values.append(ast.Constant(""))
    texts = []
    for expression in (tree, quirk):
        canon = _source.Canon(keep_docstrings=False)
        canon.node(expression.body)
        texts.append("".join(canon.out))
    assert texts[0] == texts[1]
    assert "'>'" not in texts[0]
    assert "s1:>" in texts[0]


def test_lambdas_on_one_line_get_their_own_fingerprints(
    load: Callable[[str], ModuleType],
) -> None:
    """Two lambdas on a line are told apart by their parameters, and each follows its body."""
    first = load("add, double = (lambda x: x + 1), (lambda y: y * 2)\n")
    second = load("add, double = (lambda x: x + 1), (lambda y: y * 3)\n")
    assert code_fingerprint(first.add) != code_fingerprint(first.double)
    assert code_fingerprint(first.add) == code_fingerprint(second.add)
    assert code_fingerprint(first.double) != code_fingerprint(second.double)


def test_closures_and_nested_functions_are_fingerprinted_by_their_code(
    load: Callable[[str], ModuleType],
) -> None:
    """Closures and nested functions have source; a user function in a cell counts."""
    source = (
        "def shout(text):\n    return text.upper()\n\n"
        "def make(greeting, style=shout):\n"
        "    def greet(name):\n        return style(greeting + name)\n    return greet\n"
    )
    first, second = load(source), load(source.replace("upper", "lower"))
    assert code_fingerprint(first.make("Hi ")) == code_fingerprint(first.make("Hello "))
    assert code_fingerprint(first.make("Hi ")) != code_fingerprint(second.make("Hi "))
    assert _source.source_nodes(first.make("Hi ")) is not None


def test_recursive_and_mutually_recursive_functions_terminate() -> None:
    """A function already on the walk's stack adds only its name."""
    assert code_fingerprint(sample.countdown) == GOLDEN["countdown"]
    assert code_fingerprint(sample.is_even) != code_fingerprint(sample.is_odd)


def test_builtins_partials_and_callable_objects_get_fingerprints() -> None:
    """A builtin is known by name, a partial by function and arguments, an object by __call__."""
    assert code_fingerprint(len) != code_fingerprint(print)
    assert code_fingerprint(functools.partial(sample.render, width=4)) != code_fingerprint(
        functools.partial(sample.render, width=5)
    )
    assert code_fingerprint(sample.Extractor()) == code_fingerprint(sample.Extractor())
    assert code_fingerprint(sample.Extractor()) == code_fingerprint(sample.Extractor.__call__)


def test_a_function_without_source_falls_back_to_its_code_object() -> None:
    """A function made by exec() has no source: its code object decides, stably."""

    def make(literal: str) -> Callable[..., Any]:
        namespace: dict[str, Any] = {}
        exec(f"def f(x):\n    return x + {literal!r}\n", namespace)  # noqa: S102
        return namespace["f"]

    assert _source.source_nodes(make("a")) is None
    assert code_fingerprint(make("a")) == code_fingerprint(make("a"))
    assert code_fingerprint(make("a")) != code_fingerprint(make("b"))


def test_a_notebook_cell_function_is_fingerprinted_from_its_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Code exec()-ed with its text in linecache, as IPython runs cells, has source."""
    filename = f"<cell-{uuid.uuid4().hex}>"
    source = "def extract(text):\n    return 'Find: ' + text\n"
    entry = (len(source), None, source.splitlines(keepends=True), filename)
    monkeypatch.setitem(linecache.cache, filename, entry)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    # As after a cell that ran ``from __future__ import annotations``.
    flags = __future__.annotations.compiler_flag
    exec(compile(source, filename, "exec", flags=flags, dont_inherit=True), namespace)  # noqa: S102
    fingerprint = code_fingerprint(namespace["extract"])
    monkeypatch.setattr(_fingerprint, "_INTERPRETER", "another Python")
    assert code_fingerprint(namespace["extract"]) == fingerprint
    assert is_user_code(namespace["extract"])


def test_a_file_edited_after_import_is_fingerprinted_by_the_code_that_runs(
    load: Callable[[str], ModuleType], tmp_path: Path
) -> None:
    """The running code, not the edited file, decides, so an old answer never gets a new key."""
    old = load('def extract(text):\n    return "old prompt " + text\n')
    new_source = 'def extract(text):\n    return "new, longer prompt " + text\n'
    Path(old.__file__ or "").write_text(new_source)
    new = load(new_source)
    assert code_fingerprint(old.extract) != code_fingerprint(new.extract)
    assert _source.source_nodes(old.extract) is None


def test_a_user_wrapper_layer_is_part_of_the_fingerprint(
    load: Callable[[str], ModuleType],
) -> None:
    """A functools.wraps decorator in the user's code can change answers, so it counts."""
    source = (
        "import functools\n\n"
        "def shouting(fn):\n    @functools.wraps(fn)\n"
        "    def wrapper(*args):\n        return fn(*args).upper()\n    return wrapper\n\n"
        "@shouting\ndef extract(text):\n    return text\n"
    )
    first, second = load(source), load(source.replace(".upper()", ".lower()"))
    assert code_fingerprint(first.extract) != code_fingerprint(second.extract)


def test_a_library_wrapper_layer_adds_nothing(load: Callable[[str], ModuleType]) -> None:
    """Wrappers from the standard library are not the user's code and are not walked."""
    module = load("def numbers(n):\n    yield from range(n)\n")
    plain = code_fingerprint(module.numbers)
    assert code_fingerprint(contextlib.contextmanager(module.numbers)) == plain
    assert code_fingerprint(functools.lru_cache(module.numbers)) == plain


def test_helpers_of_the_root_package_count_even_in_site_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An app installed into site-packages still has its own helpers walked."""
    site_packages = tmp_path / "site-packages"
    monkeypatch.syspath_prepend(str(site_packages))
    fingerprints = []
    for body in ("text.strip()", "text.lower()"):
        package = f"fp_app_{uuid.uuid4().hex}"
        (site_packages / package).mkdir(parents=True)
        (site_packages / package / "__init__.py").write_text("")
        (site_packages / package / "helpers.py").write_text(
            f"def clean(text):\n    return {body}\n"
        )
        (site_packages / package / "app.py").write_text(
            f"from {package}.helpers import clean\n\ndef extract(text):\n    return clean(text)\n"
        )
        importlib.invalidate_caches()
        app = importlib.import_module(f"{package}.app")
        assert not is_user_code(app.clean)
        fingerprints.append(code_fingerprint(app.extract))
        monkeypatch.delitem(sys.modules, f"{package}.app")
    assert fingerprints[0] != fingerprints[1]


def test_the_arguments_of_a_decorator_that_is_not_this_packages_count(
    load: Callable[[str], ModuleType],
) -> None:
    """A decorator may carry the prompt or the model (``@ell.simple(model=...)``), so it counts."""
    source = (
        "def system(prompt):\n    def decorate(fn):\n        fn.prompt = prompt\n"
        "        return fn\n\n    return decorate\n\n"
        "MODEL = 'small'\n\n"
        "@staticmethod\n@system(MODEL + ': be brief.')\ndef extract(text):\n    return text\n"
    )
    base = fingerprint_of(load, source)
    assert fingerprint_of(load, source.replace("be brief", "be thorough")) != base
    assert fingerprint_of(load, source.replace("'small'", "'large'")) != base
    assert fingerprint_of(load, source.replace("@staticmethod\n", "")) == base


def test_a_docstring_a_library_wrapper_may_send_is_part_of_the_fingerprint(
    load: Callable[[str], ModuleType], library: Callable[[str], str]
) -> None:
    """Under a library's wrapper the docstring may be the prompt (ell sends it); not under ours."""
    sends_docs = library(
        "import functools\n\ndef simple(fn):\n    @functools.wraps(fn)\n"
        "    def wrapper(text):\n        return fn.__doc__ + fn(text)\n\n    return wrapper\n"
    )
    source = (
        f"import {sends_docs}\n\n@{sends_docs}.simple\n"
        'def extract(text):\n    """You find users."""\n    return text\n'
    )
    base = fingerprint_of(load, source)
    assert fingerprint_of(load, source.replace("find", "locate")) != base
    plain = source.replace(f"@{sends_docs}.simple\n", "")
    assert fingerprint_of(load, plain.replace("find", "locate")) == fingerprint_of(load, plain)


def test_a_library_object_holding_the_user_function_is_walked(
    load: Callable[[str], ModuleType], library: Callable[[str], str]
) -> None:
    """A library decorator that returns an object without __wrapped__ still shows the code."""
    holds = library(
        "class PromptFunction:\n    def __init__(self, fn):\n        self.fn = fn\n\n"
        "    def __call__(self, text):\n        return self.fn(text)\n"
    )
    source = (
        f"import {holds}\n\n"
        f"@{holds}.PromptFunction\ndef extract(text):\n    return 'Find: ' + text\n"
    )
    assert fingerprint_of(load, source.replace("Find", "Locate")) != fingerprint_of(load, source)


def test_a_docstring_read_as_a_prompt_is_part_of_the_fingerprint(
    load: Callable[[str], ModuleType],
) -> None:
    """A function that sends its own __doc__ depends on it, so the docstring stays in."""
    source = 'def extract(text):\n    """Find the user."""\n    return extract.__doc__ + text\n'
    first, second = load(source), load(source.replace("Find", "Locate"))
    assert code_fingerprint(first.extract) != code_fingerprint(second.extract)


def test_library_code_is_not_user_code(load: Callable[[str], ModuleType]) -> None:
    """The standard library, site-packages and this package are never walked into."""
    assert not is_user_code(json.dumps)
    assert not is_user_code(pydantic.BaseModel.model_validate)
    assert not is_user_code(make_cache_key)
    assert not is_user_code(len)
    assert is_user_code(load("def helper():\n    return 1\n").helper)
    assert is_user_code(sample.render)


def test_a_call_into_a_library_does_not_walk_it(load: Callable[[str], ModuleType]) -> None:
    """json.dumps and pydantic are resolved as library code and add nothing to the fingerprint."""
    module = load(
        "import json\nimport pydantic\n\n"
        "def extract(text):\n    return json.dumps(pydantic.BaseModel.model_validate(text))\n"
    )
    walker = _fingerprint._Walker(module.extract)
    for chain in [("json", "dumps"), ("pydantic", "BaseModel", "model_validate"), ("json",)]:
        assert walker._dependency(module.extract.__globals__, chain) is None


@pytest.mark.parametrize(
    "callable_",
    [
        pytest.param(len, id="builtin"),
        pytest.param(object, id="class"),
        pytest.param(sample.Extractor().__call__, id="bound method"),
        pytest.param(staticmethod(sample.render), id="staticmethod"),
        pytest.param(functools.lru_cache(sample.render), id="lru_cache"),
        pytest.param(functools.partial(print, sep=object()), id="partial of a builtin"),
        pytest.param(str.upper, id="method descriptor"),
        pytest.param(type("Odd", (), {"__wrapped__": property(lambda _: 1 / 0)})(), id="odd"),
    ],
)
def test_the_fingerprint_never_raises(callable_: Any) -> None:
    """Any callable gets a 64-digit fingerprint, the same every time."""
    assert len(code_fingerprint(callable_)) == 64
    assert code_fingerprint(callable_) == code_fingerprint(callable_)


def test_a_module_is_parsed_once_for_all_its_functions(
    load: Callable[[str], ModuleType],
) -> None:
    """Fingerprinting many functions of one module reuses its parse."""
    module = load("".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(20)))
    before = _source._parse.cache_info()
    fingerprints = {code_fingerprint(getattr(module, f"f{i}")) for i in range(20)}
    after = _source._parse.cache_info()
    assert len(fingerprints) == 20
    assert after.misses - before.misses == 1


@pytest.mark.parametrize(
    ("source", "old", "new"),
    [
        (
            "import re\nPATTERN = re.compile(r'\\d+')\n\n"
            "def extract(text):\n    return PATTERN.findall(text)\n",
            "\\d+",
            "\\w+",
        ),
        (
            "import string\nPROMPT = string.Template('Find $who')\n\n"
            "def extract(text):\n    return PROMPT.substitute(who=text)\n",
            "Find",
            "Locate",
        ),
        (
            "import dataclasses\n\n@dataclasses.dataclass(frozen=True)\nclass Config:\n"
            "    model: str\n    prompt: str\n\nCONFIG = Config(model='m', prompt='v1')\n\n"
            "def extract(text):\n    return CONFIG.prompt + text\n",
            "v1",
            "v2",
        ),
        (
            "def make_builder(language):\n    def build(text):\n"
            "        return 'Translate into ' + language + ': ' + text\n    return build\n\n"
            "build_prompt = make_builder('French')\n\n"
            "def extract(text):\n    return build_prompt(text)\n",
            "French",
            "German",
        ),
    ],
    ids=["compiled-pattern", "string-template", "frozen-dataclass", "module-level-closure"],
)
def test_an_edited_constant_object_or_helper_closure_changes_the_fingerprint(
    load: Callable[[str], ModuleType], source: str, old: str, new: str
) -> None:
    """Constants kept as objects, and what a module-level helper closure captured, count."""
    assert fingerprint_of(load, source) != fingerprint_of(load, source.replace(old, new))
    assert fingerprint_of(load, source) == fingerprint_of(load, source)
