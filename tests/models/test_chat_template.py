"""The plain chat template: exact format, assistant-token masks (for TRL), AutoGen message conversion."""

from __future__ import annotations

import pytest
from autogen_core import FunctionCall, Image
from autogen_core.models import (
    AssistantMessage,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    SystemMessage,
    UserMessage,
)
from PIL import Image as PILImage
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from synth.chat_template import PLAIN_CHAT_TEMPLATE, ensure_chat_template, messages_to_dicts, render_prompt

CONVERSATION = [
    {"role": "system", "content": "Be terse."},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Red."},
    {"role": "tool", "content": '{"r": 1}'},
    {"role": "assistant", "name": "Intent Reconstructor", "content": '{"intent": "greet"}'},
]


def tiny_tokenizer(*, bos: bool = True) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained offline in milliseconds (no chat template)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [
        "### System\nBe terse.\n\n### User\nName a colour.\n\n### Assistant\nRed.",
        '{"intent": "greet"}',
    ] * 20
    tok.train_from_iterator(corpus, trainer)
    kwargs = {"bos_token": "<bos>"} if bos else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>", **kwargs
    )


@pytest.fixture(scope="module")
def embedded_tokenizer():
    from transformers import AutoTokenizer

    from synth.models.local import model_path

    return AutoTokenizer.from_pretrained(str(model_path("gemma-3-270m")))


def test_format_is_exactly_as_documented() -> None:
    tok = tiny_tokenizer()
    assert render_prompt(tok, CONVERSATION) == (
        "<bos>### System\nBe terse.\n\n### User\nName a colour.\n\n### Assistant\nRed.<eos>\n\n"
        '### Tool\n{"r": 1}\n\n### Intent Reconstructor\n{"intent": "greet"}<eos>\n\n### Assistant\n'
    )


def test_generation_prompt_header_and_options() -> None:
    tok = tiny_tokenizer(bos=False)
    msgs = [{"role": "user", "content": "Hi"}]
    assert render_prompt(tok, msgs, assistant_header="Judge") == "### User\nHi\n\n### Judge\n"
    assert render_prompt(tok, msgs, add_generation_prompt=False) == "### User\nHi\n\n"
    parts = [
        {
            "role": "retrieval_result",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        }
    ]
    assert render_prompt(tok, parts, add_generation_prompt=False) == "### Retrieval Result\nab\n\n"


def test_ensure_chat_template_keeps_an_existing_one() -> None:
    tok = tiny_tokenizer()
    assert ensure_chat_template(tok).chat_template == PLAIN_CHAT_TEMPLATE
    tok.chat_template = "{{ 'custom' }}"
    assert ensure_chat_template(tok).chat_template == "{{ 'custom' }}"


def _masked_spans(mask: list[int]) -> list[tuple[int, int]]:
    spans, start = [], None
    for i, m in enumerate([*mask, 0]):
        if m and start is None:
            start = i
        if not m and start is not None:
            spans.append((start, i))
            start = None
    return spans


def test_assistant_mask_covers_exactly_content_and_end_marker() -> None:
    tok = ensure_chat_template(tiny_tokenizer())
    out = tok.apply_chat_template(
        CONVERSATION, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"], out["assistant_masks"]
    spans = _masked_spans(mask)
    assert [tok.decode(ids[a:b]) for a, b in spans] == ["Red.<eos>", '{"intent": "greet"}<eos>']
    eos = tok.eos_token_id
    assert all(ids[b - 1] == eos for _, b in spans)
    assert tok.decode(ids[: spans[0][0]]).endswith("### Assistant\n")  # the header is never trained on


@pytest.mark.slow
def test_assistant_mask_with_the_embedded_tokenizer(embedded_tokenizer) -> None:
    tok = ensure_chat_template(embedded_tokenizer)
    out = tok.apply_chat_template(
        CONVERSATION, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert [tok.decode(ids[a:b]) for a, b in _masked_spans(mask)] == ["Red.<eos>", '{"intent": "greet"}<eos>']
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1


def test_trl_sft_assistant_only_loss_runs_with_the_template(tmp_path) -> None:
    trl = pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = ensure_chat_template(tiny_tokenizer())
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    data = Dataset.from_list([{"messages": CONVERSATION[:3]}, {"messages": CONVERSATION}] * 2)
    args = trl.SFTConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=2,
        use_cpu=True,
        assistant_only_loss=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
    )
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    row = trainer.train_dataset[1]  # datasets adds "name": None to every message: rendered as no name
    assert tok.decode([t for t in row["labels"] if t != -100]) == 'Red.<eos>{"intent": "greet"}<eos>'
    trainer.train()


def test_messages_to_dicts_converts_every_autogen_message() -> None:
    msgs = [
        SystemMessage(content="sys"),
        UserMessage(content=["a", "b"], source="user"),
        AssistantMessage(content="ok", source="writer"),
        AssistantMessage(content=[FunctionCall(id="1", name="f", arguments='{"x": 1}')], source="writer"),
        FunctionExecutionResultMessage(
            content=[FunctionExecutionResult(content="42", call_id="1", name="f")]
        ),
    ]
    assert messages_to_dicts(msgs) == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "a\nb"},
        {"role": "assistant", "content": "ok"},
        {"role": "assistant", "content": '[{"name": "f", "arguments": "{\\"x\\": 1}"}]'},
        {"role": "tool", "content": "42"},
    ]


def test_images_are_refused_with_a_clear_error() -> None:
    image = Image.from_pil(PILImage.new("RGB", (2, 2)))
    with pytest.raises(ValueError, match="text-only"):
        messages_to_dicts([UserMessage(content=["look", image], source="user")])
