"""Evaluation speed-ups keep the scored answers: stop-at-answer is prefix-safe, and length-sorted,
early-stopped generation gives the same answers as the plain loop. Plus the QA row formats accepted."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tests.train.fixtures_train import tiny_model, write_jsonl
from train.errors import TrainError
from train.qa import answer_complete, build_messages, extract_answer, load_qa

FRAGMENTS = [
    "Paris",
    " ",
    "\n",
    "\n\n",
    "```json",
    "```",
    "{",
    "}",
    '"answer"',
    ": ",
    '"Rome"',
    ",",
    '"x": 1',
]
FRAGMENTS += ["The answer is ", "[", "]", "null", "foo bar", '{"answer": "Oslo"}', "  "]


def test_extract_answer_reads_the_first_line_or_a_json_answer_starting_on_it() -> None:
    assert extract_answer('  {"answer": "Paris"} trailing') == "Paris"
    assert extract_answer("\nRed.\nmore text") == "Red."
    assert extract_answer('```json\n{"answer": "Oslo",\n "citations": []}\n```') == "Oslo"
    assert extract_answer('Rome\n{"answer": "Oslo"}') == "Rome"  # a JSON object on a later line is not read
    assert extract_answer('{"other": 1} Rome\nmore') == '{"other": 1} Rome'
    assert extract_answer("") == "" and extract_answer("```\n\n") == ""


def test_answer_complete_is_prefix_safe_on_random_generations() -> None:
    """Wherever generation would stop, the answer read from the prefix equals the full text's."""
    rng = random.Random(0)
    stops = 0
    for _ in range(3000):
        text = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randrange(1, 12)))
        for end in range(len(text) + 1):
            if answer_complete(text[:end]):
                stops += 1
                assert extract_answer(text[:end]) == extract_answer(text), (text[:end], text)
                break
    assert stops > 1000  # the criterion does fire, not only at the end
    assert answer_complete("Paris\n") and not answer_complete("Paris")
    assert answer_complete('{"answer": "Paris"') is False and answer_complete('{"answer": "Paris"}')


def _newline_every_few_tokens(generator: Any) -> None:
    """Make the tiny (random) model end a line whenever its last token id is a multiple of 4, so rows
    finish their first line after different numbers of tokens (a random model never writes one)."""
    newline = generator.tokenizer("\n", add_special_tokens=False)["input_ids"][-1]
    forward = generator.model.forward

    def patched(*args: Any, **kwargs: Any) -> Any:
        out = forward(*args, **kwargs)
        last = kwargs["input_ids"][:, -1]
        out.logits[(last % 4 == 0) & (last != newline), -1, newline] = 1e4
        return out

    generator.model.forward = patched


def test_fast_generation_gives_the_same_answers_in_the_same_order(tmp_path: Path) -> None:
    from train.generation import FolderGenerator

    model = tiny_model(tmp_path / "tiny")
    passages = [{"id": "1", "title": "", "text": "Hamlet is a tragedy written by William Shakespeare."}]
    prompts = [
        build_messages(f"Who wrote Hamlet {q}?", passages * n, "plain")
        for q, n in enumerate((0, 3, 1, 2, 0, 4))
    ]
    outputs = {}
    for fast in (False, True):
        generator = FolderGenerator(model, 24, 3, fast=fast)
        _newline_every_few_tokens(generator)
        outputs[fast] = generator.generate(prompts)
    slow, fast_ = outputs[False], outputs[True]
    assert [extract_answer(t) for t in fast_] == [extract_answer(t) for t in slow]
    assert all(extract_answer(t) for t in slow)  # non-empty first lines: the comparison means something
    assert all(s.startswith(f.rstrip("\n")) for s, f in zip(slow, fast_, strict=True))
    stopped = sum(len(f) < len(s) for f, s in zip(fast_, slow, strict=True))
    assert stopped >= len(prompts) // 2  # rows stopped at their answers


def test_load_qa_accepts_passage_objects_strings_and_ctxs(tmp_path: Path) -> None:
    rows = load_qa(
        write_jsonl(
            tmp_path / "qa.jsonl",
            [
                {
                    "id": "a",
                    "question": "Q1",
                    "answers": ["x"],
                    "passage": {"id": "p", "title": "T", "text": "P"},
                },
                {
                    "question": "Q2",
                    "answers": "y",
                    "passage": "Plain.",
                    "ctxs": ["c1", {"text": "c2", "id": 9}],
                },
            ],
        )
    )
    assert rows[0]["passages"] == [{"id": "p", "title": "T", "text": "P"}] and rows[0]["id_given"]
    assert [p["text"] for p in rows[1]["passages"]] == ["Plain.", "c1", "c2"]
    assert rows[1]["id"] == "2" and not rows[1]["id_given"]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "Q", "answers": ["x"], "passage": 3}])
    with pytest.raises(TrainError, match=r"bad.jsonl:1: 'passage' must be a string or an object"):
        load_qa(bad)


def test_eval_dtype_choices() -> None:
    import torch

    from synth.models.local.hardware import cpu_supports_bf16
    from train.generation import weights_dtype

    native = torch.bfloat16 if cpu_supports_bf16() else torch.float32
    assert weights_dtype("default", "cpu") == weights_dtype("auto", "cpu") == native
    assert weights_dtype("fp32", "cpu") == torch.float32 and weights_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(TrainError, match="--dtype: unknown dtype 'fp64'"):
        weights_dtype("fp64", "cpu")


def test_a_shared_prefix_is_computed_once_and_gives_the_same_answers(tmp_path: Path) -> None:
    """Few-shot prompts share their worked examples: generation from the cached prefix (rows batched
    only with rows of equal length) returns what generating every full prompt does."""
    import train.generation as generation
    from train.fewshot import few_shot_messages

    model = tiny_model(tmp_path / "tiny")
    passage = {"id": "1", "title": "", "text": "Hamlet is a tragedy written by William Shakespeare."}
    examples = [
        {"question": f"Example {n}?", "answers": ["Shakespeare"], "passages": [passage]} for n in range(3)
    ]
    questions = ["Who wrote Hamlet?", "Who?", "Who wrote it?", "Who?", "Who wrote Macbeth, the play?"]
    prompts = [few_shot_messages(q, [passage], examples, "plain") for q in questions]
    generator = generation.FolderGenerator(model, 12, 2)
    _newline_every_few_tokens(generator)
    cached: list[Any] = []
    original = generator._prefix_cache

    def record(prefix: list[int]) -> Any:
        cached.append(len(prefix))
        return original(prefix)

    generator._prefix_cache = record  # type: ignore[method-assign]
    with_prefix = generator.generate(prompts)
    assert cached and cached[0] >= generation.MIN_SHARED_PREFIX  # the shared path ran
    plain = [generator.generate([p])[0] for p in prompts]  # one prompt: nothing shared
    assert with_prefix == plain and len(cached) == 1


def test_shared_prefix_leaves_every_prompt_a_token_and_ignores_short_ones() -> None:
    from train.generation import MIN_SHARED_PREFIX, shared_prefix

    long = list(range(MIN_SHARED_PREFIX + 5))
    assert shared_prefix([long, long]) == long[:-1]
    assert shared_prefix([long, [*long[:-2], -1, -2]]) == long[:-2]
    assert shared_prefix([long, [0, 1, 2]]) == []
