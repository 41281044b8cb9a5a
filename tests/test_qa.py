"""synth.qa: the QA helpers SMART, ATM and train/ share (gold answers, a row's passages, headers)."""

from __future__ import annotations

import pytest

from synth.qa import (
    HEADERS,
    RESPONDER_HEADER,
    PassageShapeError,
    RowPassage,
    gold_answers,
    passage_text,
    row_passages,
)


def test_gold_answers_take_a_string_or_a_list_and_drop_blanks() -> None:
    assert gold_answers({"answers": " Paris "}) == ["Paris"]
    assert gold_answers({"answers": ["a", " ", 3, "b"]}) == ["a", "b"]
    assert gold_answers({}) == []


def test_row_passages_read_both_shapes_in_order() -> None:
    row = {
        "passage": "Paris is the capital.",
        "title": "Paris",
        "passage_id": "p1",
        "ctxs": ["plain text", {"id": 7, "title": "T", "text": "t", "hasanswer": False}, {"text": "  "}],
    }
    assert row_passages(row) == [
        RowPassage("passage", 0, "Paris is the capital.", "p1", "Paris"),
        RowPassage("ctxs", 0, "plain text", None, ""),
        RowPassage("ctxs", 1, "t", "7", "T", hasanswer=False, is_object=True),
    ]
    assert row_passages({"passage": {"text": "x", "id": "q"}})[0] == RowPassage(
        "passage", 0, "x", "q", "", is_object=True
    )


def test_a_malformed_entry_is_named_with_where_and_skipped_without() -> None:
    assert row_passages({"passage": 3, "ctxs": [None]}) == []
    with pytest.raises(PassageShapeError, match=r"f.jsonl:2: 'passage' must be a string or an object"):
        row_passages({"passage": 3}, where="f.jsonl:2")
    with pytest.raises(PassageShapeError, match=r"f.jsonl:2: ctxs\[1\] must be"):
        row_passages({"ctxs": ["a", {"title": "no text"}]}, where="f.jsonl:2")


def test_passage_text_and_headers() -> None:
    assert passage_text({"id": "1", "title": "T", "text": "x"}) == "[1] T\nx"
    assert passage_text({"id": "1", "title": "", "text": "x"}) == "[1]\nx"
    assert RESPONDER_HEADER == HEADERS["response_generator"] == "Response Generator"
