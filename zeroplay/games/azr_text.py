"""AZR's prompt texts and response parsing (pure text: no sandbox, no sampler).

Prompts follow the structure of AZR (Zhao et al. 2025, arXiv 2505.03335), written for this project.
They are an R1-style frame around every prompt, a propose prompt per task with K reference triplets
(abduction `code_i`, deduction `code_o`), an induction propose prompt (`code_f`) that shows one
program, and a solve prompt per task. Only the plain variants exist: no composite functions, and
no options that rewrite the proposed snippet.

Response parsing follows the rules of the AZR reference implementation, but every extractor is
written to run in linear time: a completion is adversarial text (a policy optimised for reward),
and several of the reference's regular expressions backtrack quadratically on hostile input (`\\s*`
before a lazy group with no closing fence, `<input>\\s*(.*?)(?:</input>|\\s*$)`, `^\\s*def` over
blank lines...). Each function below says which reference expression it reproduces.
"""
from __future__ import annotations

import ast
import re
from typing import Sequence

# The R1-style frame. There is no chat template: this text, with the request inserted, is the
# whole prompt, and the model continues after the opening <think>.
R1_TEMPLATE = (
    "This is a conversation between a User and an Assistant. The User gives a task and the "
    "Assistant carries it out. The Assistant first reasons the task through, then gives the "
    "final answer: the reasoning goes inside <think> </think> tags and the answer inside "
    "<answer> </answer> tags, as in <think> reasoning </think> <answer> answer </answer>. "
    "User: {}\nAssistant: <think>")

# The identity seed program with its input.
SEED_PROGRAM = "def f(a):\n    return a"
SEED_INPUT = '"Hello world"'
# The induction seed: the identity with six inputs (outputs equal the inputs), three of them
# shown, and this message.
SEED_INDUCTION_INPUTS = ('"Hello world"', "1", "dict(a=1, b=2)", "(1.1, 1.2, 1.3)",
                         '"[[1, 0, 0], [0, 0, 0], [0, 0, 0]]"', "1001101100010001")
SEED_INDUCTION_MESSAGE = "Write a function that returns its input unchanged"
# Appended to the program shown in the induction propose prompt.
INDUCTION_SNIPPET_SUFFIX = "\nf(<your input goes here>)"

# The rules for a program, shared by the propose prompts and the induction solve prompt. In the
# templates below, a backslash at the end of a line joins it with the next (one prompt line).
_CODE_RULES = """\
- Name the entry function `f` (`def f(...): ...`); nested definitions inside `f` are allowed.
- `f` takes at least one argument and returns a value.
- `f` is deterministic. Do not use:
  * random numbers or random choices
  * dates or times
  * I/O (reading files, network requests)
  * printing or logging
  * any state outside the snippet
- It runs in under 10 seconds on a modern CPU.
- All imports and class definitions go at the very top of the snippet.
- The snippet ends with the `return` of `f`; anything after it is removed.
"""

_PROPOSE_RULES = _CODE_RULES + """\
- Solving it requires tracking state through several transformations, over many reasoning steps.

### Input
- Give exactly one test input for `f`.
- Separate multiple arguments with commas.
- Put quotes around string arguments.

### Format
Write the code as
```python
def f(...):
    # your code
    return ...
```
and the input as
```input
arg1, arg2, ...
```
For example:
```python
def f(words: list, k: int):
    # logic here
    return result
```
```input
['pear', 'fig', 'kiwi'], 2
```

### What makes a good submission
- It runs: the snippet executes on your input.
"""

_PROPOSE_END = """\
- Its difficulty comes from algorithms or logic, e.g. custom data structures (trees, heaps, stacks, queues, \
graphs) or involved control flow (dynamic programming, recursion, divide and conquer, greedy choices, backtracking).
- It is original: clearly different from the reference snippets.
- It avoids banned words: none of these may appear anywhere, not even in comments: {banned_keywords}

Plan first: decide how your snippet will be hard, how it differs from the references and what makes it \
creative. Then write the final snippet and its input.

### Reference snippets:
"""

# Each propose prompt's difficulty line names the opposite direction of its task (abduction: the
# output is hard to predict; deduction: the input is hard to find), as AZR's prompts do.
PROPOSE_ABDUCTION = """
## Task: write a Python snippet, and one input for it, whose input is hard to recover from its output

Taking the reference snippets below as examples, write a new Python code snippet for which it takes deep \
algorithmic reasoning to deduce one possible input from a given output. Custom classes are allowed (define them \
at the top). Submit the snippet with one test input: we run the snippet on the input, and a test subject who \
sees the output must find any input that produces it. It is an IQ test.

### Code
""" + _PROPOSE_RULES + """\
- It is hard: predicting the output from your input and the snippet takes real reasoning.
""" + _PROPOSE_END

PROPOSE_DEDUCTION = """
## Task: write a new Python snippet, and one input for it, whose output is hard to predict

Taking the reference snippets below as examples, write a new Python code snippet for which it takes deep \
algorithmic reasoning to deduce the output from the input. Custom classes are allowed (define them at the top). \
Submit the snippet with one test input: a test subject who sees the snippet and the input must work out the \
output. It is an IQ test.

### Code
""" + _PROPOSE_RULES + """\
- It is hard: finding your input from the snippet and the output it produces takes real reasoning.
""" + _PROPOSE_END

PROPOSE_INDUCTION = """
## Task: write {num_inputs} inputs for the snippet below that give varied outputs, and a message about it

Design {num_inputs} inputs for the code snippet below that together produce a diverse set of outputs. A test \
subject will see some of your inputs with their outputs and must work out the function: it is an IQ test. You \
may leave the test subject a message to help.

### Inputs
- Give {num_inputs} valid inputs for the snippet.
- Within an input, separate multiple arguments with commas.
- Put quotes around string arguments.
- Wrap each input in its own ```input``` block.

### Message
- Wrap the message in a ```message``` block.
- It may take any form, e.g. a coding question or a plain description of what the snippet does.
- It must not contain the code snippet.

### Format
```input
arg1, arg2, ...
```
For example:
```input
['pear', 'fig', 'kiwi'], 2
```
```input
['plum'], 0
```

### What makes a good submission
- It runs: the snippet executes on each of your inputs.
- Coverage: the inputs and outputs span the snippet's input space, enough to pin the function down.
- Variety: the inputs differ clearly from one another.
- Balance: inputs and message together make the task challenging but solvable.

Plan first: understand the snippet, then say how your inputs cover it and why they are challenging and \
creative. Then write the inputs, each in an ```input``` block, and the message in a ```message``` block.

### Code snippet:
```python
{snippet}
```
"""

SOLVE_ABDUCTION = """
# Task: find an input for which the code below returns the given output
Reason step by step, then give one input that makes the code snippet produce the output below. Put the input \
in an ```input``` block. Quote string arguments, and separate multiple arguments with commas.

# Code snippet:
```python
{snippet}
```

# Output:
```output
{output}
```

# Answer format:
```input
arg1, arg2, ...
```
For example:
```input
['pear', 'fig', 'kiwi'], 2
```
"""

SOLVE_DEDUCTION = """
# Task: predict what the code below returns for the given input
Reason step by step about what the code snippet returns when called with the input below, then put that \
output in an ```output``` block. Quote strings, and wrap several returned values in a tuple.

# Code snippet:
```python
{snippet}
```

# Input:
```input
{input_args}
```

# Answer example:
```output
{{'total': 7, 'names': ['ann', 'bo']}}
```
"""

SOLVE_INDUCTION = """
# Task: recover the function behind the input/output pairs
Below are input/output pairs and a message about the function that produced them. Reason step by step and \
write a code snippet that reproduces them, and also the hidden pairs: it should match the code that generated \
the data. Checking your function against each pair in turn helps; revise it until every pair matches. Your \
final snippet, in a ```python``` block, is what gets evaluated.

# Code requirements:
""" + _CODE_RULES + """
# Input/output pairs:
{input_output_pairs}

# Message:
```message
{message}
```

# Answer example:
```python
def f(a):
    return a
```

Remember: the entry function must be named `f`.
"""


# -- prompts ---------------------------------------------------------------------------------

def r1_prompt(body: str) -> str:
    """The whole prompt text for one request: the R1 template around `body`."""
    return R1_TEMPLATE.format(body)


def propose_prompt(task: str, references: Sequence[dict], banned_keywords: Sequence[str]) -> str:
    """Abduction (`code_i`) or deduction (`code_o`) propose prompt with K reference triplets."""
    template = {"code_i": PROPOSE_ABDUCTION, "code_o": PROPOSE_DEDUCTION}[task]
    parts = [template.format(banned_keywords=", ".join(banned_keywords))]
    for i, ref in enumerate(references):
        parts.append(f"<snippet_{i}>\n```python\n{ref['snippet']}\n```\n```input\n{ref['input']}\n"
                     f"```\n```output\n{ref['output']}\n```\n</snippet_{i}>\n")
    parts.append("\n")  # where the (disabled) composite-function requirements would go
    return "".join(parts)


def induction_propose_prompt(snippet: str, num_inputs: int) -> str:
    return PROPOSE_INDUCTION.format(num_inputs=num_inputs,
                                    snippet=snippet + INDUCTION_SNIPPET_SUFFIX)


def solve_prompt(task: str, entry: dict) -> str:
    """The solve prompt for a buffer entry: deduction shows program + input, abduction program
    + output, induction the shown I/O pairs (the first `n_shown`) + the message."""
    if task == "code_o":
        return SOLVE_DEDUCTION.format(snippet=entry["snippet"], input_args=entry["input"])
    if task == "code_i":
        return SOLVE_ABDUCTION.format(snippet=entry["snippet"], output=entry["output"])
    if task == "code_f":
        k = int(entry["n_shown"])
        pairs = "".join(f"```input_{i}\n{x}\n```\n```output_{i}\n{y}\n```\n"
                        for i, (x, y) in enumerate(zip(entry["inputs"][:k], entry["outputs"][:k])))
        return SOLVE_INDUCTION.format(input_output_pairs=pairs, message=entry["message"])
    raise ValueError(f"unknown AZR task {task!r}")


# -- response format and answer ---------------------------------------------------------------

_WS = re.compile(r"\s*")


def _skip_ws(s: str, i: int) -> int:
    return _WS.match(s, i).end()


def as_text(text) -> str:
    """A completion's text as a str ('' for anything else)."""
    return text if isinstance(text, str) else ""


def generation_text(completion_text: str) -> str:
    """What the reference scores: the prompt ends with "<think>", so the response is read with
    it in front (the reference splits the decoded prompt+response at "Assistant:" and takes
    `.strip().strip('\"\\'')` of the rest)."""
    return ("<think>" + as_text(completion_text)).strip().strip("\"'")


def is_well_formatted(generation: str) -> bool:
    """`re.match(r"(?s)<think>.*?</think>\\s*<answer>.*?</answer>", generation)`, linear time:
    the text starts with <think>, and after the first `</think>\\s*<answer>` comes `</answer>`
    (a later `</think>\\s*<answer>` can only end later, so the first one decides)."""
    if not generation.startswith("<think>"):
        return False
    i = generation.find("</think>", 7)
    while i >= 0:
        j = _skip_ws(generation, i + 8)
        if generation.startswith("<answer>", j):
            return generation.find("</answer>", j + 8) >= 0
        i = generation.find("</think>", i + 1)
    return False


def extract_answer(text: str) -> str:
    """Content of the last <answer> up to the next </answer> (or the end), stripped; '' when
    there is no <answer> (reference `extract_answer`, extraction type "answer")."""
    i = text.rfind("<answer>")
    if i < 0:
        return ""
    rest = text[i + 8:]
    j = rest.find("</answer>")
    return (rest if j < 0 else rest[:j]).strip()


# -- fenced blocks and the reference's fallbacks -----------------------------------------------

def _fenced(s: str, tag: str) -> list[str]:
    """All matches of `re.finditer(r"```TAG\\s*\\n?(.*?)\\n?```", s, DOTALL | IGNORECASE)`."""
    opener = re.compile(re.escape("```" + tag), re.IGNORECASE)
    out, pos = [], 0
    while True:
        m = opener.search(s, pos)
        if m is None:
            return out
        j = _skip_ws(s, m.end())
        k = s.find("```", j)
        if k < 0:  # no closing fence after this opener, hence none after any later one
            return out
        body = s[j:k]
        out.append(body[:-1] if body.endswith("\n") else body)
        pos = k + 3


def code_blocks(s: str, first_only: bool = False) -> list[str]:
    """Matches of `r"```(?:python\\s*)?\\n?(.*?)\\n?```"` (DOTALL | IGNORECASE): any fenced block,
    an optional `python` tag dropped. Like the reference, a leading ```input block counts."""
    out, pos = [], 0
    while True:
        i = s.find("```", pos)
        if i < 0:
            return out
        j = i + 3
        if s[j:j + 6].lower() == "python":
            j = _skip_ws(s, j + 6)
        elif s.startswith("\n", j):
            j += 1
        k = s.find("```", j)
        if k < 0:
            return out
        body = s[j:k]
        out.append(body[:-1] if body.endswith("\n") else body)
        if first_only:
            return out
        pos = k + 3


def _label_field(s: str, label: str, first_only: bool = False) -> list[str]:
    """Matches of `r"LABEL\\s*(.*?)(?=\\n```|$)"` (DOTALL | IGNORECASE), e.g. "# Input:"."""
    opener = re.compile(re.escape(label), re.IGNORECASE)
    n, out, pos = len(s), [], 0
    while True:
        m = opener.search(s, pos)
        if m is None:
            return out
        j = _skip_ws(s, m.end())
        ends = [n]
        k = s.find("\n```", j)
        if k >= 0:
            ends.append(k)
        if n and s[-1] == "\n" and n - 1 >= j:
            ends.append(n - 1)
        p = min(ends)
        out.append(s[j:p])
        if first_only:
            return out
        pos = p


def _call_field(s: str, name: str) -> list[str]:
    """Matches of `r"NAME\\s*\\((.*?)\\)"` (DOTALL | IGNORECASE), e.g. `input(...)`."""
    opener = re.compile(re.escape(name), re.IGNORECASE)
    out, pos = [], 0
    while True:
        m = opener.search(s, pos)
        if m is None:
            return out
        j = _skip_ws(s, m.end())
        if s.startswith("(", j):
            k = s.find(")", j + 1)
            if k < 0:
                return out
            out.append(s[j + 1:k])
            pos = k + 1
        else:
            pos = m.start() + 1


def _tag_field(s: str, tag: str, first_only: bool = False, strip_tail: bool = False) -> list[str]:
    """Matches of `r"<TAG>\\s*(.*?)(?:</TAG>|\\s*$)"` (DOTALL | IGNORECASE); with `strip_tail`,
    of `r"<TAG>\\s*(.*?)\\s*</TAG>"` (closing tag required)."""
    opener = re.compile(re.escape(f"<{tag}>"), re.IGNORECASE)
    closer = re.compile(re.escape(f"</{tag}>"), re.IGNORECASE)
    out, pos = [], 0
    while True:
        m = opener.search(s, pos)
        if m is None:
            return out
        j = _skip_ws(s, m.end())
        c = closer.search(s, j)
        if c is None:  # no closing tag here or after: the group runs to the trailing space
            if not strip_tail:
                out.append(s[j:max(j, len(s.rstrip()))])
            return out
        body = s[j:c.start()]
        out.append(body.rstrip() if strip_tail else body)
        if first_only:
            return out
        pos = c.end()


def _phrase_field(s: str, phrase: str) -> list[str]:
    """The match of `r"PHRASE\\s*(.*?)\\.?$"` (DOTALL | IGNORECASE): runs to the end, less one
    final "." and one final newline (one match at most: the first runs to the end)."""
    m = re.compile(re.escape(phrase), re.IGNORECASE).search(s)
    if m is None:
        return []
    rest = s[_skip_ws(s, m.end()):]
    if rest.endswith(".\n"):
        return [rest[:-2]]
    if rest.endswith(("\n", ".")):
        return [rest[:-1]]
    return [rest]


def extract_io_answer(answer: str, which: str) -> str:
    """A solver's predicted input (`which="input"`) or output from the answer content, by the
    reference's rules (`CodeIORewardManager.extract_input_output`): the last ```input block;
    else the last "# Input:" field; else `input(...)`; else `<input>...`; else "the input is
    ..."; else the whole answer. Not stripped (quotes matter)."""
    for found in (_fenced(answer, which), _label_field(answer, f"# {which}:"),
                  _call_field(answer, which), _tag_field(answer, which),
                  _phrase_field(answer, f"the {which} is")):
        if found:
            return found[-1]
    return answer


def extract_code_answer(answer: str) -> str | None:
    """An induction answer: the last fenced block, stripped; None without one (a format
    error, as in the reference's `parse_code_function`)."""
    blocks = code_blocks(answer)
    return blocks[-1].strip() if blocks else None


# -- proposals ---------------------------------------------------------------------------------

_DEF_AT = re.compile(r"def\s+(\w+)\s*\(")


def function_defs(code: str, nested: bool = True) -> list[str]:
    """Names of the functions defined in `code`. `nested=True` reproduces the reference's
    `re.findall(r"^\\s*def\\s+(\\w+)\\s*\\(", code, re.MULTILINE)`: every `def` that starts a
    line after indentation, methods and nested functions included; `nested=False` counts only
    unindented ones."""
    names, offset, floor = [], 0, 0
    for line in code.split("\n"):
        start = offset + (len(line) - len(line.lstrip()) if nested else 0)
        offset += len(line) + 1
        if start < floor or not code.startswith("def", start):
            continue
        m = _DEF_AT.match(code, start)
        if m is not None:
            names.append(m.group(1))
            floor = m.end()
    return names


def rename_entry(code: str, name: str) -> str:
    """Rename the entry function (and its calls) to `f`, as the reference does by regex."""
    if name == "f":
        return code
    code = re.sub(rf"def\s+{re.escape(name)}\s*\(", "def f(", code)
    return re.sub(rf"\b{re.escape(name)}\s*\(", "f(", code)


def program_parses(code: str) -> bool:
    try:
        ast.parse(code)
    except Exception:  # SyntaxError, ValueError (NUL bytes), RecursionError, MemoryError...
        return False
    return True


def parse_imports(code: str) -> list[str]:
    """The program's import statements as lines (the reference stores them with each entry and
    puts them in front of an induction answer when it is checked). [] when it does not parse."""
    try:
        tree = ast.parse(code)
    except Exception:
        return []
    lines = []
    for node in ast.walk(tree):
        names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "")
                          for a in getattr(node, "names", ()))
        if isinstance(node, ast.Import):
            lines.append(f"import {names}")
        elif isinstance(node, ast.ImportFrom):
            lines.append(f"from {'.' * (node.level or 0)}{node.module or ''} import {names}")
    return lines


def parse_proposal(answer: str, *, reject_multiple_functions: bool = True,
                   nested_defs: bool = True) -> dict | None:
    """A deduction/abduction proposal (reference `parse_code_input_output`, code location
    "first", entry rename "not_first"): the first fenced block is the program, the first
    ```input block (else a "# Input:" field) the input. None when either is missing, the
    program defines no function, or it defines more than one and that is rejected."""
    code = code_blocks(answer, first_only=True)
    inp = _fenced(answer, "input")[:1] or _label_field(answer, "# input:", first_only=True)
    if not code or not inp:
        return None
    snippet, input_expr = code[0].strip(), inp[0].strip()
    names = function_defs(snippet, nested=nested_defs)
    if not names or (reject_multiple_functions and len(names) > 1):
        return None
    snippet = rename_entry(snippet, names[0])
    return {"snippet": snippet, "input": input_expr, "imports": parse_imports(snippet)}


def parse_induction_proposal(answer: str, num_inputs: int) -> dict | None:
    """An induction proposal (reference `parse_inputs_message`): at least `num_inputs` ```input
    blocks (the last `num_inputs` are kept) and a message (```message block, else <message>
    tags, else a "# Message:" field). None when either is missing."""
    inputs = [x.strip() for x in _fenced(answer, "input")]
    if len(inputs) < num_inputs or num_inputs <= 0:
        return None
    message = (_fenced(answer, "message")[:1] or _tag_field(answer, "message", True, True)
               or _label_field(answer, "# message:", first_only=True))
    if not message:
        return None
    return {"inputs": inputs[-num_inputs:], "message": message[0].strip()}


def clean_text(s: str) -> str:
    """`s` with lone surrogates replaced, so that the state stays JSON- and UTF-8-clean."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "replace").decode("utf-8")
