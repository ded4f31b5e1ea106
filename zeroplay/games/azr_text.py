"""AZR's prompt texts and response parsing (pure text: no sandbox, no sampler).

The prompt texts are the Absolute Zero Reasoner's own (Zhao et al. 2025, arXiv 2505.03335; the
reference implementation LeapLabTHU/Absolute-Zero-Reasoner @ a82124e, MIT License, Copyright (c)
2025 LeapLab), reproduced word for word because the method is defined by them: the R1 template
around every prompt, the two propose prompts with K reference triplets (abduction `code_i`,
deduction `code_o`), the induction propose prompt (`code_f`) and the three solve prompts, with the
reference's default options resolved (no composite functions, `remove_input_from_snippet=False`,
`remove_after_return=False`). The code here is ours.

Response parsing follows the reference's rules, but every extractor is written to run in linear
time: a completion is adversarial text (a policy optimised for reward), and several of the
reference's regular expressions backtrack quadratically on hostile input (`\\s*` before a lazy
group with no closing fence, `<input>\\s*(.*?)(?:</input>|\\s*$)`, `^\\s*def` over blank lines...).
Each function below says which reference expression it reproduces.
"""
from __future__ import annotations

import ast
import re
from typing import Sequence

# R1 template; the chat template is replaced by plain concatenation (the reference sets the
# tokenizer's chat template to the bare message content), so this text is the whole prompt.
R1_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
    "here </think> <answer> answer here </answer>. User: {}\nAssistant: <think>")

# The identity seed program (reference `seed_program`) with its input.
SEED_PROGRAM = "def f(a):\n    return a"
SEED_INPUT = '"Hello world"'
# The reference's induction seed: the identity with six inputs (outputs equal the inputs) and
# this message; with six inputs the reference shows three and hides three.
SEED_INDUCTION_INPUTS = ('"Hello world"', "1", "dict(a=1, b=2)", "(1.1, 1.2, 1.3)",
                         '"[[1, 0, 0], [0, 0, 0], [0, 0, 0]]"', "1001101100010001")
SEED_INDUCTION_MESSAGE = "Write a function that returns whatever you input"
# Appended to the program shown in the induction propose prompt.
INDUCTION_SNIPPET_SUFFIX = "\nf(<|YOUR INPUT WILL BE PLUGGED HERE|>)"

# Note (reference text, kept as is): the deduction propose prompt's "Evaluation Criteria" speak
# of predicting the *input* from the output; the reference ships it this way.
PROPOSE_ABDUCTION = """
## Task: Create a Python Code Snippet (where custom classes are allowed, which should be defined at the top of the code snippet) with one Matching Input

Using the reference code snippets provided below as examples, design a new and unique Python code snippet that demands deep algorithmic reasoning to deduce one possible input from a given output. Your submission should include both a code snippet and test input pair, where the input will be plugged into the code snippet to produce the output, which that function output be given to a test subject to come up with any input that will produce the same function output. This is meant to be an I.Q. test.

### Code Requirements:
- Name the entry function `f` (e.g., `def f(...): ...`), you can have nested definitions inside `f`
- Ensure the function returns a value
- Include at least one input parameter
- Make the function deterministic
- Make the snippet require state tracking across multiple data transformations, ensuring the task requires long multi step reasoning
- AVOID THE FOLLOWING:
  * Random functions or variables
  * Date/time operations
  * I/O operations (reading files, network requests)
  * Printing or logging
  * Any external state
- Ensure execution completes within 10 seconds on a modern CPU
- All imports and class definitions should be at the very top of the code snippet
- The snippet should end with a return statement from the main function `f`, anything after will be removed


### Input Requirements:
- Provide exactly one test input for your function
- Format multiple arguments with commas between them
- Remember to add quotes around string arguments

### Formatting:
- Format your code with: ```python
  def f(...):
      # your code here
      return ...
  ```
- Format your input with: ```input
  arg1, arg2, ...
  ```

### Example Format:
```python
def f(name: str, info: dict):
    # code logic here
    return result
```

```input
'John', {{'age': 20, 'city': 'New York'}}
```

### Evaluation Criteria:
- Executability, your code should be executable given your input
- Difficulty in predicting the output from your provided input and code snippet. Focus on either algorithmic reasoning or logic complexity. For example, you can define complex data structure classes and operate on them like trees, heaps, stacks, queues, graphs, etc, or use complex control flow, dynamic programming, recursions, divide and conquer, greedy, backtracking, etc
- Creativity, the code needs to be sufficiently different from the provided reference snippets
- Restricted usage of certain keywords and packages, you are not allowed to use the following words in any form, even in comments: {banned_keywords}

First, carefully devise a clear plan: e.g., identify how your snippet will be challenging, distinct from reference snippets, and creative. Then, write the final code snippet and its inputs.

### Reference Code Snippets:
"""

PROPOSE_DEDUCTION = """
## Task: Create a New Python Code Snippet (where custom classes are allowed, which should be defined at the top of the code snippet) with one Matching Input

Using the reference code snippets provided below as examples, design a new and unique Python code snippet that demands deep algorithmic reasoning to deduce the output from the input. Your submission should include a code snippet and a test input pair, where the input will be plugged into the code snippet to produce the output. The input will be given to a test subject to deduce the output, which is meant to be an I.Q. test.

### Code Requirements:
- Name the entry function `f` (e.g., `def f(...): ...`), you can have nested definitions inside `f`
- Ensure the function returns a value
- Include at least one input parameter
- Make the function deterministic
- Make the snippet require state tracking across multiple data transformations, ensuring the task requires long multi step reasoning
- AVOID THE FOLLOWING:
  * Random functions or variables
  * Date/time operations
  * I/O operations (reading files, network requests)
  * Printing or logging
  * Any external state
- Ensure execution completes within 10 seconds on a modern CPU
- All imports and class definitions should be at the very top of the code snippet
- The snippet should end with a return statement from the main function `f`, anything after will be removed


### Input Requirements:
- Provide exactly one test input for your function
- Format multiple arguments with commas between them
- Remember to add quotes around string arguments

### Formatting:
- Format your code with:
```python
def f(...):
    # your code here
    return ...
```
- Format your input with:
```input
arg1, arg2, ...
```

### Example Format:
```python
def f(name: str, info: dict):
    # code logic here
    return result
```

```input
'John', {{'age': 20, 'city': 'New York'}}
```

### Evaluation Criteria:
- Executability, your code should be executable given your input
- Difficulty in predicting your ```input``` from 1) your ```python``` code and 2) the deterministic ```output``` that will be obtained from your ```input```. Focus on either algorithmic reasoning or logic complexity. For example, you can define complex data structure classes and operate on them like trees, heaps, stacks, queues, graphs, etc, or use complex control flow, dynamic programming, recursions, divide and conquer, greedy, backtracking, etc
- Creativity, the code needs to be sufficiently different from the provided reference snippets
- Restricted usage of certain keywords and packages, you are not allowed to use the following words in any form, even in comments: {banned_keywords}

First, carefully devise a clear plan: e.g., identify how your snippet will be challenging, distinct from reference snippets, and creative. Then, write the final code snippet and its inputs.

### Reference Code Snippets:
"""

PROPOSE_INDUCTION = """
## Task: Output {num_inputs} Inputs that can be plugged into the following Code Snippet to produce diverse Outputs, and give a message related to the given snippet.

Using the code snippet provided below, design {num_inputs} inputs that can be plugged into the code snippet to produce a diverse set of outputs. A subset of your given input and its deterministically produced outputs will be given to a test subject to deduce the function, which is meant to be an I.Q. test. You can also leave a message to the test subject to help them deduce the code snippet.

### Input Requirements:
- Provide {num_inputs} valid inputs for the code snippet
- For each input, format multiple arguments with commas between them
- Remember to add quotes around string arguments
- Each input should be individually wrapped in ```input``` tags

### Message Requirements:
- Leave a message to the test subject to help them deduce the code snippet
- The message should be wrapped in ```message``` tags
- The message can be in any form, can even be formed into a coding question, or a natural language instruction what the code snippet does
- You cannot provide the code snippet in the message

### Formatting:
- Format your input with:
```input
arg1, arg2, ...
```

### Example Format:
```input
'John', {{'age': 20, 'city': 'New York'}}
```
```input
'Sammy', {{'age': 37, 'city': 'Los Angeles'}}
```

### Evaluation Criteria:
- Executability, your code should be executable given your inputs
- Coverage, the inputs and outputs should cover the whole input space of the code snippet, able to deduce the code snippet from the inputs and outputs
- Creativity, the inputs need to be sufficiently different from each other
- The overall selection of inputs and message combined should be challenging for the test subject, but not impossible for them to solve
First, carefully devise a clear plan: e.g., understand the code snippet, then identify how your proposed inputs have high coverage, and why the inputs will be challenging and creative. Then, write the inputs and message. Remember to wrap your inputs in ```input``` tags, and your message in ```message``` tags.

### Code Snippet:
```python
{snippet}
```
"""

SOLVE_ABDUCTION = """
# Task: Provide One Possible Input of a Python Code Snippet Given the Code and Output
Given the following Code Snippet and the Output, think step by step then provide one possible input that produced the output. The input needs to be wrapped in ```input``` tags. Remember if an argument is a string, wrap it in quotes. If the function requires multiple arguments, separate them with commas.

# Code Snippet:
```python
{snippet}
```

# Output:
```output
{output}
```

# Output Format:
```input
arg1, arg2, ...
```
# Example Output:
```input
'John', {{'age': 20, 'city': 'New York'}}
```
"""

SOLVE_DEDUCTION = """
# Task: Deduce the Output of a Python Code Snippet Given the Code and Input
Given the following Code Snippet and the Input, think step by step then deduce the output that will be produced from plugging the Input into the Code Snippet. Put your output in ```output``` tags. Remember if the output is a string, wrap it in quotes. If the function returns multiple values, remember to use a tuple to wrap them.

# Code Snippet:
```python
{snippet}
```

# Input:
```input
{input_args}
```

# Example Output:
```output
{{'age': 20, 'city': 'New York'}}
```
"""

SOLVE_INDUCTION = """
# Task: Deduce the Function that Produced the Outputs from the Inputs
Given a set of input/output pairs and a message that describes the function, think through the problem step by step to deduce a general code snippet. This code should produce the hidden outputs from the hidden inputs, matching the original data-generating code that created the input/output pairs. Place your final answer inside python tags! It may be helpful to work through each input/output pair individually to test your function. If your function doesn’t work as expected, revise it until it does. The final code snippet will be used to evaluate your response, which is wrapped in ```python``` tags.

# Code Requirements:
- Name the entry function `f` (e.g., `def f(...): ...`), you can have nested definitions inside `f`
- Ensure the function returns a value
- Include at least one input parameter
- Make the function deterministic
- AVOID THE FOLLOWING:
  * Random functions or variables
  * Date/time operations
  * I/O operations (reading files, network requests)
  * Printing or logging
  * Any external state
- Ensure execution completes within 10 seconds on a modern CPU
- All imports and class definitions should be at the very top of the code snippet
- The snippet should end with a return statement from the main function `f()`, anything after will be removed

# Input and Output Pairs:
{input_output_pairs}

# Message:
```message
{message}
```

# Example Output:
```python
def f(a):
    return a
```

Name your entry function `f()`!!!
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
