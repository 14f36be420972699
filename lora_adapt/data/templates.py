"""Named chat templates (Jinja), for tokenizers without one or to override the tokenizer's.

Each renders ``messages`` ({role, content}) and honours ``add_generation_prompt``. Their marker
strings (``<|im_start|>`` ...) tokenize as plain text when the tokenizer lacks them as special tokens.
"""

from __future__ import annotations

from ..errors import DataError

CHAT_TEMPLATES = {
    "chatml": (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "llama3": (
        "{{ bos_token }}"
        "{% for message in messages %}"
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
    "zephyr": (
        "{% for message in messages %}"
        "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    ),
}


def chat_template(name: str) -> str:
    """The Jinja source for a template name; a string that is already Jinja is returned as is."""
    if name in CHAT_TEMPLATES:
        return CHAT_TEMPLATES[name]
    if "{{" in name or "{%" in name:
        return name
    raise DataError(
        f"data.chat_template: unknown template {name!r}",
        hint=f"use one of {', '.join(CHAT_TEMPLATES)} or a Jinja template string",
    )


def resolve_chat_template(tokenizer, override: str | None) -> str | None:
    """The template to render chats with: data.chat_template, else the tokenizer's, else None."""
    if override:
        return chat_template(override)
    return getattr(tokenizer, "chat_template", None) or None
