"""SMART end to end over HTTP (loopback server, scripted roles): stored trajectories, exports, TRL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from graphs.smart.exports import exact_match_reward
from graphs.smart.graph import GRAPH, SmartSeed, build, span_in_passage
from synth.engine.inputs import read_rows
from synth.engine.session import RunRequest, run_session
from synth.engine.store import RunStore
from synth.graph import ModelSet
from synth.metrics import exact_match, normalize_answer
from synth.retrieval import CorpusError
from synth.trajectory import Trajectory
from tests.smart_script import INVENTED_SPAN, smart_responder

CAPITALS = [
    ("France", "Paris is the capital of France. It lies on the Seine."),
    ("Germany", "Berlin is the capital of Germany. It has many museums."),
    ("Italy", "Rome is the capital of Italy. It was founded on seven hills."),
    ("Spain", "Madrid is the capital of Spain. It sits on a high plateau."),
    ("Japan", "Tokyo is the capital of Japan. It is a very large city."),
]


def topic_corpus() -> list[dict[str, str]]:
    """Three topic words, three passages each, so k=2 results of the three queries are disjoint."""
    rows = [{"id": f"cap-{i}", "title": t, "text": x} for i, (t, x) in enumerate(CAPITALS)]
    for topic in ("alpha", "beta", "gamma"):
        rows += [
            # longer passages score lower, so ties never decide which two of the three are retrieved
            {"id": f"{topic}-{n}", "title": topic, "text": f"A note about {topic}." + " More words here." * n}
            for n in range(3)
        ]
    return rows


@pytest.fixture(autouse=True)
def index_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SYNTH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_rows(
    tmp_path: Path, server: Any, rows: list[dict[str, Any]], **options: Any
) -> dict[str, Trajectory]:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", topic_corpus())
    seeds = write_jsonl(tmp_path / "seeds.jsonl", rows)
    server.script(smart_responder)
    request = RunRequest(
        graph="smart",
        input=seeds,
        out=tmp_path / "run",
        options={"corpus": str(corpus), **options},
        models={"default": f"openai:scripted@{server.base_url}"},
        concurrency=4,
    )
    asyncio.run(run_session(request))
    store = RunStore(tmp_path / "run")
    records = {str(r.seed.get("question") or r.seed.get("instruction")): r for r in store.iter_records()}
    store.close()
    for record in records.values():  # every result reads back through the graph's typed result model
        if record.status == "ok":
            record.result_as(GRAPH.result_model)
    return records


def test_branch_with_facts_keeps_gold_answer_model_answer_and_exact_match(
    tmp_path: Path, openai_server: Any
) -> None:
    question = "what is the capital of france"
    record = run_rows(
        tmp_path, openai_server, [{"question": question, "answers": ["Paris", "Paris, France"]}]
    )[question]
    assert record.status == "ok", record.error
    assert [s.role for s in record.steps] == [
        "intent_reconstructor",
        "knowledge_retriever",
        "fact_locator",
        "fact_locator",
        "fact_locator",
        "response_generator",
    ]
    result = record.result
    assert result["branch"] == "with_facts" and result["queries"] == [question]
    facts = {f["passage"]["id"]: f for f in result["facts"]}
    assert len(facts) == 3 and facts["cap-0"]["relevant"]
    assert facts["cap-0"]["spans"] == ["Paris is the capital of France."]  # whitespace normalised
    assert [f["reason"] for i, f in facts.items() if i != "cap-0"] == ["judged irrelevant"] * 2
    assert result["model_answer"] == "Paris" and result["answer"] == "Paris" and result["exact_match"] is True
    assert result["citations"] == ["cap-0"] and result["dropped_citations"] == ["bogus-id"]
    assert record.scores["exact_match"] == 1.0 and record.scores["relevant_passages"] == 1
    assert record.steps[-1].node == "respond_with_facts"
    # the locator saw the gold answer, the generator did not
    locator_prompt = record.steps[2].messages[1]["content"]
    assert "Correct answer: Paris | Paris, France" in locator_prompt
    assert "Paris, France" not in record.steps[-1].messages[1]["content"]


def test_branch_without_facts_exports_the_gold_answer(tmp_path: Path, openai_server: Any) -> None:
    question = "what is the capital of atlantis"
    record = run_rows(tmp_path, openai_server, [{"question": question, "answers": ["Poseidonia"]}])[question]
    result = record.result
    assert record.status == "ok" and result["branch"] == "without_facts"
    assert record.steps[-1].node == "respond_without_facts"
    assert "Located facts" not in record.steps[-1].messages[1]["content"]
    assert result["answer"] == "Poseidonia" and result["model_answer"] == "unknown"
    assert result["exact_match"] is False and result["citations"] == []


def test_a_hallucinated_span_makes_the_passage_irrelevant_with_the_reason(
    tmp_path: Path, openai_server: Any
) -> None:
    question = "HALLUCINATE what is the capital of italy"
    record = run_rows(tmp_path, openai_server, [{"question": question, "answers": ["Rome"]}])[question]
    facts = {f["passage"]["id"]: f for f in record.result["facts"]}
    rome = facts["cap-2"]
    assert rome["claimed_relevant"] and not rome["relevant"] and rome["spans"] == []
    assert rome["rejected_spans"] == [INVENTED_SPAN] and rome["reason"] == "1 of 2 spans not in the passage"
    assert record.result["branch"] == "without_facts"
    assert record.scores["rejected_span_passages"] == 1


def test_fan_out_runs_one_locator_per_distinct_passage(tmp_path: Path, openai_server: Any) -> None:
    records = run_rows(
        tmp_path,
        openai_server,
        [
            {"question": "ALLRELEVANT QUERIES: alpha; beta; gamma"},
            {"question": "ALLRELEVANT QUERIES: alpha; alpha note; ALPHA"},
        ],
        top_k=2,
    )
    disjoint = records["ALLRELEVANT QUERIES: alpha; beta; gamma"]
    assert disjoint.result["queries"] == ["alpha", "beta", "gamma"]
    locators = [s for s in disjoint.steps if s.role == "fact_locator"]
    assert len(locators) == 2 * 3 and len({s.meta["passage_id"] for s in locators}) == 6
    assert [len(r["hits"]) for r in disjoint.result["retrieval"]] == [2, 2, 2]
    assert disjoint.result["branch"] == "with_facts" and disjoint.result["exact_match"] is None
    assert disjoint.result["citations"] == [f["passage"]["id"] for f in disjoint.result["facts"]]

    overlapping = records["ALLRELEVANT QUERIES: alpha; alpha note; ALPHA"]
    assert overlapping.result["queries"] == ["alpha", "alpha note"]  # case-insensitive duplicate dropped
    assert len([s for s in overlapping.steps if s.role == "fact_locator"]) == 2  # same two passages, once
    assert overlapping.result["facts"][0]["queries"] == [0, 1]


def test_max_queries_and_failed_roles(tmp_path: Path, openai_server: Any) -> None:
    records = run_rows(
        tmp_path,
        openai_server,
        [
            {"question": "ALLRELEVANT QUERIES: alpha; beta; gamma"},
            {"question": "BADIR what now"},
            {"question": "BADFL capital of spain", "answers": ["Madrid"]},
        ],
        max_queries=2,
        top_k=1,
    )
    assert records["ALLRELEVANT QUERIES: alpha; beta; gamma"].result["queries"] == ["alpha", "beta"]
    bad_ir = records["BADIR what now"]
    assert bad_ir.status == "failed" and "intent_reconstructor" in (bad_ir.error or "")
    assert bad_ir.steps[0].raw == "queries: who knows"
    bad_fl = records["BADFL capital of spain"]
    assert bad_fl.status == "ok" and bad_fl.result["branch"] == "without_facts"
    assert bad_fl.result["facts"][0]["reason"].startswith("locator failed (validation)")
    assert bad_fl.scores["locator_failures"] == 1


def test_seed_rows_need_a_question_and_name_the_line(tmp_path: Path) -> None:
    seeds = write_jsonl(
        tmp_path / "s.jsonl",
        [{"question": "q", "answers": "one"}, {"instruction": "i"}, {"answers": ["x"]}],
    )
    rows = list(read_rows(seeds, SmartSeed))
    assert [r.error for r in rows[:2]] == [None, None]
    assert rows[2].error is not None and f"{seeds}:3" in rows[2].error and "'question'" in rows[2].error
    assert SmartSeed.model_validate({"question": "q", "answers": "one"}).answers == ["one"]


def test_build_checks_its_options(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="--corpus PATH"):
        build(ModelSet(default=None), **{**GRAPH.default_options, "corpus": None})
    corpus = write_jsonl(tmp_path / "c.jsonl", topic_corpus())
    with pytest.raises(ValueError, match="max_queries must be between 1 and 5, got 6"):
        build(ModelSet(default=None), **{**GRAPH.default_options, "corpus": str(corpus), "max_queries": 6})
    with pytest.raises(CorpusError, match="unknown retriever kind 'tfidf'"):
        build(
            ModelSet(default=None), **{**GRAPH.default_options, "corpus": str(corpus), "retriever": "tfidf"}
        )


def test_span_check_and_exact_match() -> None:
    passage = "Wilhelm Röntgen , of Germany , won it in 1901 .\nHe  was a physicist ."
    assert span_in_passage("Wilhelm Röntgen, of Germany, won it in 1901.", passage)
    assert span_in_passage("He was a\nphysicist .", passage)
    assert not span_in_passage("He was a chemist.", passage)
    assert not span_in_passage("   ", passage)
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert exact_match("the eiffel tower", ["Eiffel Tower"]) and not exact_match("tower", ["Eiffel Tower"])
    completions = [[{"role": "assistant", "content": '{"answer": "Paris", "citations": []}'}], "Rome"]
    assert exact_match_reward(completions, [["paris"], ["Milan"]]) == [1.0, 0.0]


# -- exports ---------------------------------------------------------------------------------------------
EXPORT_ROWS = [
    {"question": "what is the capital of france", "answers": ["Paris"]},
    {"question": "what is the capital of atlantis", "answers": ["Poseidonia"]},
    {"question": "ALLRELEVANT QUERIES: alpha; beta"},
]


@pytest.fixture
def smart_run(tmp_path: Path, openai_server: Any) -> Path:
    records = run_rows(tmp_path, openai_server, EXPORT_ROWS, top_k=2)
    assert all(r.status == "ok" for r in records.values())
    return tmp_path / "run"


def export(run_dir: Path, name: str, out: Path) -> Any:
    from datasets import load_dataset

    from synth.dataset.export import export_run

    result = export_run(run_dir, GRAPH, name, out / name)
    assert result.rows > 0, result.describe()
    return load_dataset(str(out / name), split="train")


def test_long_short_and_rl_exports_have_the_documented_shapes(smart_run: Path, tmp_path: Path) -> None:
    long = export(smart_run, "sft-long", tmp_path)
    assert long.column_names == ["id", "messages"] and len(long) == 3
    france = next(r["messages"] for r in long if "france" in r["messages"][0]["content"])
    assert [(m["role"], m["name"]) for m in france] == [
        ("user", None),
        ("assistant", "Intent Reconstructor"),
        ("tool", "Knowledge Retriever"),
        ("assistant", "Fact Locator"),
        ("tool", "Knowledge Retriever"),
        ("assistant", "Fact Locator"),
        ("assistant", "Response Generator"),
    ]
    assert json.loads(france[1]["content"]) == {"queries": ["what is the capital of france"]}
    assert france[2]["content"] == "[cap-0] France\nParis is the capital of France. It lies on the Seine."
    assert json.loads(france[3]["content"]) == {
        "relevant": True,
        "spans": ["Paris is the capital of France."],
    }
    assert json.loads(france[-1]["content"]) == {"answer": "Paris", "citations": ["cap-0"]}
    atlantis = next(r["messages"] for r in long if "atlantis" in r["messages"][0]["content"])
    assert json.loads(atlantis[-1]["content"]) == {"answer": "Poseidonia", "citations": []}  # gold target
    assert len(export(smart_run, "sft", tmp_path)) == 3  # alias

    short = export(smart_run, "sft-short", tmp_path)
    assert short.column_names == ["id", "role", "prompt", "completion", "chat_template_kwargs"]
    # one row per agent segment: IR + 2 or 4 locators + RG per trajectory
    assert len(short) == (1 + 2 + 1) * 2 + (1 + 4 + 1)
    rows = [r for r in short if "france" in r["prompt"][0]["content"]]
    assert [r["role"] for r in rows] == [
        "intent_reconstructor",
        "fact_locator",
        "fact_locator",
        "response_generator",
    ]
    for row, cut in zip(rows, [1, 3, 5, 6], strict=True):
        assert row["prompt"] == france[:cut] and row["completion"] == [france[cut]]
        assert row["chat_template_kwargs"] == {"assistant_header": france[cut]["name"]}

    rl = export(smart_run, "rl", tmp_path)
    assert rl.column_names == ["id", "prompt", "answers"] and len(rl) == 2  # the row without gold has none
    assert sorted(r["answers"][0] for r in rl) == ["Paris", "Poseidonia"]
    assert rl[0]["prompt"][0]["role"] == "user"


def _trainer(tmp_path: Path, dataset: Any, texts: list[str], **config: Any) -> Any:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from tests.tiny import build_tiny_model

    headers = "### User ### Tool ### Intent Reconstructor ### Fact Locator ### Response Generator"
    model_dir = build_tiny_model(tmp_path / "tiny", [*texts, headers, "### Knowledge Retriever"])
    return SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        train_dataset=dataset,
        args=SFTConfig(
            output_dir=str(tmp_path / "out"),
            max_steps=2,
            per_device_train_batch_size=2,
            report_to=[],
            use_cpu=True,
            save_strategy="no",
            **config,
        ),
    )


def test_sft_long_trains_with_trl_and_masks_retrieval_and_user_turns(smart_run: Path, tmp_path: Path) -> None:
    dataset = export(smart_run, "sft-long", tmp_path)
    texts = [m["content"] for row in dataset for m in row["messages"]]
    trainer = _trainer(tmp_path, dataset, texts, assistant_only_loss=True)
    tokenizer = trainer.processing_class
    for row, processed in zip(dataset, trainer.train_dataset, strict=True):
        rendered = tokenizer.apply_chat_template(
            row["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids, mask = rendered["input_ids"], rendered["assistant_masks"]
        # what TRL trains on is exactly the template's assistant mask
        assert processed["input_ids"] == ids
        assert processed["labels"] == [t if m else -100 for t, m in zip(ids, mask, strict=True)]
        text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        assert len(offsets) == len(ids)
        cursor = 0
        for message in row["messages"]:  # each message's characters -> the tokens that cover them
            begin = text.index(message["content"], cursor)
            cursor = begin + len(message["content"])
            covering = [m for (a, b), m in zip(offsets, mask, strict=True) if a < cursor and b > begin]
            if message["role"] == "assistant":
                inside = [m for (a, b), m in zip(offsets, mask, strict=True) if a >= begin and b <= cursor]
                assert inside and all(inside)
            else:  # the user turn and every retrieved passage: context only, no loss
                assert covering and not any(covering), message
        trained = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
        assert "### " not in trained  # headers are never trained on
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss > 0


def test_sft_short_trains_with_trl_as_prompt_completion(smart_run: Path, tmp_path: Path) -> None:
    dataset = export(smart_run, "sft-short", tmp_path)
    texts = [m["content"] for row in dataset for m in row["prompt"] + row["completion"]]
    # assistant_only_loss also drops the "\n\n" that the template puts after each turn's EOS
    trainer = _trainer(tmp_path, dataset, texts, assistant_only_loss=True)
    tokenizer = trainer.processing_class
    for row, processed in zip(dataset, trainer.train_dataset, strict=True):
        ids, labels = processed["input_ids"], processed["labels"]
        first = next(i for i, label in enumerate(labels) if label != -100)
        prompt = tokenizer.decode(ids[:first])
        completion = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != -100])
        # the prompt ends at this role's own header; the target is only its segment (+ EOS)
        assert prompt.endswith(f"### {row['completion'][0]['name']}\n")
        assert completion == row["completion"][0]["content"] + tokenizer.eos_token
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss > 0


def test_dpo_long_prefers_gold_in_the_answer_context_and_trains_with_trl(
    smart_run: Path, tmp_path: Path
) -> None:
    """Only the row whose model answer missed gold yields a pair; its prompt is the transcript up to the
    Response Generator, and TRL's DPO sees that header at the end of the prompt and only the JSON answer
    (plus EOS) as chosen / rejected."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from tests.tiny import build_tiny_model

    dataset = export(smart_run, "dpo-long", tmp_path)
    assert dataset.column_names == ["id", "prompt", "chosen", "rejected", "chat_template_kwargs"]
    assert len(dataset) == 1  # France: the model was right; the third row has no gold
    row = dataset[0]
    long = next(
        r["messages"]
        for r in export(smart_run, "sft-long", tmp_path)
        if "atlantis" in r["messages"][0]["content"]
    )
    assert row["prompt"] == long[:-1] and row["chosen"] == [long[-1]]
    assert [json.loads(m["content"]) for m in row["chosen"] + row["rejected"]] == [
        {"answer": "Poseidonia", "citations": []},
        {"answer": "unknown", "citations": []},
    ]
    assert row["chat_template_kwargs"] == {"assistant_header": "Response Generator"}
    texts = [m["content"] for m in row["prompt"] + row["chosen"] + row["rejected"]]
    headers = "### User ### Tool ### Intent Reconstructor ### Fact Locator ### Response Generator"
    model_dir = build_tiny_model(tmp_path / "tiny", [*texts, headers, "### Knowledge Retriever"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        processing_class=tokenizer,
        train_dataset=dataset,
        args=DPOConfig(
            output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=1, report_to=[],
            use_cpu=True, save_strategy="no",
        ),
    )  # fmt: skip
    processed = trainer.train_dataset[0]
    assert tokenizer.decode(processed["prompt_ids"]).endswith("### Response Generator\n")
    chosen = tokenizer.decode(processed["chosen_ids"])
    assert chosen.startswith(row["chosen"][0]["content"]) and "###" not in chosen
    assert trainer.train().global_step == 1
