"""The README's examples, run as written against a real ``msa serve`` with the bundled model.

Convention (the README states it under "Examples"):

* Every fenced ```` ```bash ```` or ```` ```sh ```` block of README.md holds examples; other fences
  (```` ```shell ````, ```` ```json ````, ...) are not run, so command references such as ``make serve``
  go there.
* A command is a line with its backslash continuations and its here-document body; blank lines and
  comment lines are skipped. Each command must start (after ``VAR=value`` assignments) with ``curl`` or
  ``msa`` / ``.venv/bin/msa``: anything else in such a block fails the test instead of going unchecked.
* Expected result: 200 for ``curl`` (every HTTP answer of the command) and exit status 0 for ``msa``,
  unless the comment after the command's last line (before a here-document body) starts with a status:
  ``# 422 missing_modality`` for ``curl``, ``# exit 1`` for ``msa``.
* The commands run in bash with ``pipefail`` from the repository root (so ``examples/...`` paths work),
  with ``localhost:8000`` / ``127.0.0.1:8000`` pointed at the test's server on a free port and ``msa``
  being ``python -m app.cli`` of this checkout. A pipeline must exit 0 as well.

``curl`` runs through a wrapper that appends ``--write-out '%{stderr}README_STATUS %{http_code}'``; a
connection failure or a missing upload file gives status 000 and fails the example.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from app.config import REPO_ROOT

README = REPO_ROOT / "README.md"
RUN_FENCES = ("bash", "sh")
STATUS_MARK = "README_STATUS"
_FENCE = re.compile(r"^\s*```\s*([\w+-]*)\s*$")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")
_PORT = re.compile(r"\b(?:localhost|127\.0\.0\.1):8000\b")


@dataclass(frozen=True)
class Example:
    """One command of a README shell block."""

    line: int  # 1-based line of README.md where the command starts
    text: str  # the command as written (continuations and here-document body included)
    program: str  # "curl" or "msa"; anything else is reported as an unchecked example
    expected: int  # HTTP status for curl, exit status for msa

    @property
    def id(self) -> str:
        first = self.text.splitlines()[0]
        return f"L{self.line}:{first[:60]}"


def _comment_start(line: str) -> int | None:
    """Index of the ``#`` that starts a shell comment in ``line`` (outside quotes), or None."""
    quote: str | None = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return i
    return None


def _program(first_line: str) -> str:
    code = first_line[: _comment_start(first_line)]
    for word in shlex.split(code.replace("\\\n", " ").rstrip("\\")):
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", word):
            continue  # VAR=value before the command
        return "msa" if word in ("msa", ".venv/bin/msa") else word
    return ""


def _expected(program: str, last_line: str) -> int:
    start = _comment_start(last_line)
    comment = last_line[start + 1 :].strip() if start is not None else ""
    if program == "msa":
        m = re.match(r"exit\s+(\d+)\b", comment)
        return int(m.group(1)) if m else 0
    m = re.match(r"(\d{3})\b", comment)
    return int(m.group(1)) if m else 200


def parse_examples(markdown: str) -> list[Example]:
    """Every command of the ``bash``/``sh`` blocks of ``markdown``, with its expectation."""
    lines = markdown.splitlines()
    examples: list[Example] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        i += 1
        if fence is None:
            continue
        body_start = i
        while i < len(lines) and not _FENCE.match(lines[i]):
            i += 1
        block = lines[body_start:i]
        i += 1  # the closing fence
        if fence.group(1) not in RUN_FENCES:
            continue
        j = 0
        while j < len(block):
            stripped = block[j].strip()
            if not stripped or stripped.startswith("#"):
                j += 1
                continue
            start = j
            while block[j].rstrip().endswith("\\") and j + 1 < len(block):
                j += 1
            command_lines = block[start : j + 1]
            last_line = block[j]
            heredoc = _HEREDOC.search(" ".join(command_lines))
            if heredoc:
                while j + 1 < len(block) and block[j].strip() != heredoc.group(2):
                    j += 1
                command_lines = block[start : j + 1]
            j += 1
            program = _program("\n".join(block[start : start + 1]))
            examples.append(
                Example(
                    line=body_start + start + 1,
                    text="\n".join(command_lines),
                    program=program,
                    expected=_expected(program, last_line),
                )
            )
    return examples


EXAMPLES = parse_examples(README.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------ the server
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


@dataclass(frozen=True)
class Runner:
    port: int
    env: dict[str, str]

    def run(self, example: Example) -> list[str]:
        """Run ``example``; the list of what went wrong (empty: as documented)."""
        if example.program not in ("curl", "msa"):
            return [f"README line {example.line}: {example.program!r} is not a curl or msa example"]
        text = _PORT.sub(f"127.0.0.1:{self.port}", example.text)
        text = re.sub(r"(?<![\w/.])\.venv/bin/msa\b", "msa", text)
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", text],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        where = f"README line {example.line}: {example.text}\n--- stderr:\n{result.stderr[-2000:]}"
        problems = []
        if "Traceback" in result.stderr:
            problems.append(f"traceback; {where}")
        if example.program == "msa":
            if result.returncode != example.expected:
                problems.append(f"exit {result.returncode}, documented {example.expected}; {where}")
            return problems
        statuses = [int(s) for s in re.findall(rf"^{STATUS_MARK} (\d{{3}})$", result.stderr, re.M)]
        if not statuses:
            problems.append(f"no HTTP answer; {where}")
        elif any(s != example.expected for s in statuses):
            problems.append(f"status {statuses}, documented {example.expected}; {where}")
        if result.returncode != 0:
            problems.append(f"command exited {result.returncode}; {where}")
        return problems


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    """``msa serve`` with the bundled model (default settings but the port) and a PATH whose ``curl``
    reports each status and whose ``msa`` is this checkout's ``python -m app.cli``."""
    real_curl = shutil.which("curl")
    assert real_curl, "curl is needed to run the README's examples"
    bin_dir = tmp_path_factory.mktemp("readme-bin")
    # --show-error: curl's own message (e.g. a missing upload file) in the failure report, even with -s.
    write_out = f"'%{{stderr}}{STATUS_MARK} %{{http_code}}\\n'"
    curl = f'{shlex.quote(real_curl)} --show-error "$@" --write-out {write_out}'
    (bin_dir / "curl").write_text(f"#!/bin/sh\nexec {curl}\n")
    (bin_dir / "msa").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m app.cli "$@"\n')
    for script in bin_dir.iterdir():
        script.chmod(0o755)
    env = _base_env()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"

    port = _free_port()
    log = tmp_path_factory.mktemp("readme-server") / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=_base_env(),
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 300  # the bundled model's load and warm-up on a busy 2-core machine
        while True:
            if server.poll() is not None:
                pytest.fail(f"msa serve exited with {server.returncode}:\n{log.read_text(errors='replace')}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"msa serve not ready after 300 s:\n{log.read_text(errors='replace')}")
            time.sleep(0.5)
        yield Runner(port, env)
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# ----------------------------------------------------------------------------------------- tests
def test_the_readme_has_curl_and_msa_examples() -> None:
    programs = [e.program for e in EXAMPLES]
    assert programs.count("curl") >= 8 and "msa" in programs, programs
    assert any(e.expected != 200 for e in EXAMPLES if e.program == "curl"), "no documented error status"


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_readme_example(example: Example, runner: Runner) -> None:
    problems = runner.run(example)
    assert not problems, "\n\n".join(problems)


SELF_TEST = """
```bash
curl -s localhost:8000/healthz   # 404 (wrong: it is 200)
curl -s -F image=@examples/no-such-file.jpg localhost:8000/v1/predict
curl -s localhost:8000/healthz | false
msa predict --image examples/no-such-file.jpg
echo not an example
curl -s -F text= localhost:8000/v1/predict   # 422 missing_modality (right)
```
"""


@pytest.mark.slow
def test_the_runner_catches_what_is_wrong(runner: Runner) -> None:
    examples = parse_examples(SELF_TEST)
    assert [e.program for e in examples] == ["curl", "curl", "curl", "msa", "echo", "curl"]
    assert [e.expected for e in examples] == [404, 200, 200, 0, 200, 422]
    outcomes = [runner.run(e) for e in examples]
    assert "status [200], documented 404" in outcomes[0][0]
    assert "status [0], documented 200" in outcomes[1][0]  # curl could not read the file: no request
    assert "command exited 1" in outcomes[2][0]
    assert "exit 1, documented 0" in outcomes[3][0]
    assert "not a curl or msa example" in outcomes[4][0]
    assert outcomes[5] == []


def test_parse_examples_joins_continuations_and_here_documents() -> None:
    markdown = "\n".join(
        [
            "```shell",
            "make serve",
            "```",
            "```sh",
            "# a comment",
            "curl -s -F text='# not a comment' \\",
            "  localhost:8000/v1/predict   # 415 because",
            "SENTIMENT_X=1 .venv/bin/msa predict --text hi   # exit 2",
            "curl -s localhost:8000/v1/predict --data-binary @- <<'EOF'   # 503",
            '{"text": "# body"}',
            "EOF",
            "```",
        ]
    )
    examples = parse_examples(markdown)
    assert [(e.line, e.program, e.expected) for e in examples] == [
        (6, "curl", 415),
        (8, "msa", 2),
        (9, "curl", 503),
    ]
    assert examples[0].text.endswith("localhost:8000/v1/predict   # 415 because")
    assert examples[2].text.splitlines()[-1] == "EOF"
