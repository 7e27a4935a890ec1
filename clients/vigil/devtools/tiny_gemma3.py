"""A tiny, randomly initialised Gemma 3 (text + SigLIP vision) that vLLM loads on a CPU in seconds.

It says nothing meaningful; it exists so tests and benchmarks drive the real engine (prompt
rendering, image placeholders, streaming, aborts) without model weights, which cannot be
downloaded here. The layout mirrors the released ``google/gemma-3-*-it`` checkpoints where vLLM
looks: the vocabulary, the special tokens, the chat template and the weight names.

Test and benchmark tooling, not part of any service: it needs the ``llm`` extra (torch,
transformers, tokenizers, safetensors), imported inside the functions so that importing this
module stays cheap.
"""

from __future__ import annotations

import pathlib

IMAGE_SIZE = 64
PATCH_SIZE = 8
TOKENS_PER_IMAGE = 16
MAX_POSITIONS = 4096

BOS, EOS, PAD, UNK = "<bos>", "<eos>", "<pad>", "<unk>"
START_OF_TURN, END_OF_TURN = "<start_of_turn>", "<end_of_turn>"
BOI, EOI, IMAGE_TOKEN = "<start_of_image>", "<end_of_image>", "<image_soft_token>"
SPECIAL_TOKENS = [PAD, EOS, BOS, UNK, START_OF_TURN, END_OF_TURN, BOI, EOI, IMAGE_TOKEN]
# vLLM's Gemma 3 processor merges newline runs around image blocks and looks these up by text.
NEWLINES = ["\n", "\n\n", "\n\n\n", "\n\n\n\n"]

# The chat template of google/gemma-3-4b-it: images become a bare <start_of_image>, which the
# processor expands to the full block (newlines, soft tokens, <end_of_image>).
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
    '{%- set first_user_prefix = "" -%}'
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    '{{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}'
    "{%- endif -%}"
    "{%- if (message['role'] == 'assistant') -%}"
    '{%- set role = "model" -%}'
    "{%- else -%}"
    "{%- set role = message['role'] -%}"
    "{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}"
    "{%- if message['content'] is string -%}"
    "{{ message['content'] | trim }}"
    "{%- elif message['content'] is iterable -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}"
    "{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}"
    "{{ item['text'] | trim }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- else -%}"
    '{{ raise_exception("Invalid content type") }}'
    "{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{'<start_of_turn>model\n'}}"
    "{%- endif -%}"
)

_CORPUS = [
    "You are a security video analyst. The images are frames of one video in time order.",
    "Describe what happens, citing times in [mm:ss] form, and point out anything unusual.",
    "A person walks through the parking lot at [00:12] and opens the door of a car.",
    "At [01:05] two people meet near the entrance; one carries a bag. Nothing is dangerous.",
    "The camera shows an empty corridor, then a delivery van stops outside the gate.",
    "0123456789 [](){}:;,.!?-'\" abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ",
]


def _train_tokenizer(path: pathlib.Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    # Byte-level over the corpus's ASCII alphabet only: every token then decodes to valid text, so
    # a random model's output detokenises the same incrementally and in one go. Newline runs are
    # added tokens below so they exist verbatim, as in Gemma's SentencePiece vocabulary.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL_TOKENS, show_progress=False
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    # Gemma's tokenizer prepends <bos> by default, which is why rendered chat prompts (that already
    # start with it) must be tokenised without special tokens; keep that trap in the miniature.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens={"boi_token": BOI, "eoi_token": EOI, "image_token": IMAGE_TOKEN},
        chat_template=CHAT_TEMPLATE,
        model_max_length=MAX_POSITIONS,
        padding_side="left",
    )
    fast.add_tokens(NEWLINES)
    fast.add_special_tokens({"additional_special_tokens": [START_OF_TURN, END_OF_TURN]})
    fast.save_pretrained(path)


def _rename_vision_weights(path: pathlib.Path) -> None:
    """transformers 5 saves ``vision_tower.embeddings.*``; vLLM expects the released
    ``vision_tower.vision_model.*`` layout, so move the vision tower's keys under it."""
    from safetensors.torch import load_file, save_file

    weights_file = path / "model.safetensors"
    tensors = load_file(weights_file)
    renamed = {}
    for key, value in tensors.items():
        for prefix in ("model.vision_tower.", "vision_tower."):
            if key.startswith(prefix) and not key.startswith(prefix + "vision_model."):
                key = prefix + "vision_model." + key[len(prefix) :]
                break
        renamed[key] = value.contiguous()
    save_file(renamed, weights_file, metadata={"format": "pt"})


def build_tiny_gemma3(path: pathlib.Path, *, seed: int = 0) -> pathlib.Path:
    """Write a loadable tiny Gemma 3 checkpoint (config, weights, tokenizer, processor) to path."""
    import torch
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
        GenerationConfig,
        PreTrainedTokenizerFast,
    )

    path.mkdir(parents=True, exist_ok=True)
    _train_tokenizer(path)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (BOS, EOS, PAD, BOI, EOI, IMAGE_TOKEN)}
    end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN)

    config = Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "max_position_embeddings": MAX_POSITIONS,
            "sliding_window": 512,
            # One sliding and one global layer, like the real 5:1 pattern in miniature.
            "layer_types": ["sliding_attention", "full_attention"],
            "bos_token_id": ids[BOS],
            "eos_token_id": [ids[EOS], end_of_turn],
            "pad_token_id": ids[PAD],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
            "vision_use_head": False,
        },
        mm_tokens_per_image=TOKENS_PER_IMAGE,
        boi_token_index=ids[BOI],
        eoi_token_index=ids[EOI],
        image_token_index=ids[IMAGE_TOKEN],
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).bfloat16()
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=ids[BOS], eos_token_id=[ids[EOS], end_of_turn], pad_token_id=ids[PAD]
    )
    model.save_pretrained(path)
    _rename_vision_weights(path)

    image_processor = Gemma3ImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_pan_and_scan=False,
    )
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        image_seq_length=TOKENS_PER_IMAGE,
    )
    processor.save_pretrained(path)
    return path
