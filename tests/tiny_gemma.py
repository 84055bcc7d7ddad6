"""Build a tiny random Gemma 3 multimodal model offline (the MedGemma architecture, ~140k params).

The recipe is the one in shared/ML.md: a byte-level BPE tokenizer trained here with the Gemma
special tokens, Gemma3Config with a 2-layer text model and a 1-layer SigLIP tower on 64 px
images, and the Gemma 3 processor. Everything is saved with `save_pretrained`, so the code under
test loads it exactly as it would load MedGemma from a local directory.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessorPil,
    Gemma3Processor,
    PreTrainedTokenizerFast,
)

SPECIALS = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
)
IMAGE_SIZE = 64
TOKENS_PER_IMAGE = 4

#: Gemma 3's own chat template (the system turn is folded into the first user turn).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}"
    "{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

_CORPUS = (
    "The lesion shows redness, scaling and small papules on the cheek. Observations: "
    "differential diagnosis, red flags, recommendations and follow up with a dermatologist. "
    "Tổn thương có đỏ da, vảy và sẩn nhỏ trên má. Chẩn đoán phân biệt, dấu hiệu cảnh báo. "
    "병변은 뺨에 홍반, 인설, 작은 구진을 보입니다. 감별 진단, 위험 신호, 권고 사항, 추적 관찰. "
)


def _tokenizer() -> PreTrainedTokenizerFast:
    """Train a ~400-token byte-level BPE with the Gemma specials and wrap it for transformers."""
    core = Tokenizer(models.BPE(unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=list(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator([_CORPUS] * 20, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
        chat_template=CHAT_TEMPLATE,
    )


def _token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    value = tokenizer.convert_tokens_to_ids(token)
    assert isinstance(value, int)
    return value


def _prefer_words(
    model: Gemma3ForConditionalGeneration, tokenizer: PreTrainedTokenizerFast
) -> None:
    """Zero the output rows of every token but whole words, so the random model writes
    space-separated words (a streamer flushes at spaces) and never stops on its own."""
    head = model.get_output_embeddings()
    assert head is not None
    with torch.no_grad():
        for token_id in range(head.weight.shape[0]):
            text = str(tokenizer.decode([token_id]))
            if not (text.startswith(" ") and len(text) > 2 and text.strip().isalpha()):
                head.weight[token_id].zero_()


def build_tiny_gemma(target: Path, seed: int = 0, vision_hidden: int = 32) -> Path:
    """Write a tiny random Gemma3ForConditionalGeneration + processor to `target`; return it.

    bitsandbytes' CPU 4-bit kernels need every quantized Linear to have >= 64 inputs (one
    quantization block): pass `vision_hidden=64` for a model that loads in 4-bit on CPU.
    """
    torch.manual_seed(seed)
    tokenizer = _tokenizer()
    ids = {token: _token_id(tokenizer, token) for token in SPECIALS}
    config = Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "max_position_embeddings": 4096,
            "sliding_window": 64,
            "pad_token_id": ids["<pad>"],
            "bos_token_id": ids["<bos>"],
            "eos_token_id": [ids["<eos>"], ids["<end_of_turn>"]],
        },
        vision_config={
            "hidden_size": vision_hidden,
            "intermediate_size": 2 * vision_hidden,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": 16,
        },
        mm_tokens_per_image=TOKENS_PER_IMAGE,
        tie_word_embeddings=False,
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
    )
    model = Gemma3ForConditionalGeneration(config).eval()
    _prefer_words(model, tokenizer)
    model.generation_config.pad_token_id = ids["<pad>"]
    model.generation_config.eos_token_id = [ids["<eos>"], ids["<end_of_turn>"]]
    image_processor = Gemma3ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        image_seq_length=TOKENS_PER_IMAGE,
    )
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    processor.save_pretrained(target)
    return target
