"""The Ollama Modelfile written beside `model.gguf`: `ollama create NAME -f Modelfile`.

Ollama does not run the Jinja chat template inside a GGUF file: without a TEMPLATE it picks the nearest of its
own Go templates, which drops what the run's template adds on its own (SmolLM2's injects a default system
prompt when the conversation has none), and the model then sees prompts it was not trained on. So the
Modelfile carries an explicit Go TEMPLATE for the template family the run's chat template renders (found by
rendering probe conversations, not by its name), the default system prompt as SYSTEM (Ollama puts it first
when a conversation has no system message, as the run's template does), a `PARAMETER stop` line for every
token the run stops at, and the run's generation defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith.export.gguf_writer import Generation

CHATML = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
"""ChatML for Ollama's Go templates: every message (the SYSTEM default included, which Ollama prepends as a
message), then the assistant header the model continues from."""
PROBE = (
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": "second question"},
)


@dataclass
class Modelfile:
    template: str
    system: str | None
    stops: list[str]
    generation: Generation

    def text(self, gguf_name: str) -> str:
        lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{self.template}"""']
        if self.system:
            lines.append(f'SYSTEM """{self.system}"""')
        lines += [f'PARAMETER stop "{stop}"' for stop in self.stops]
        lines += [
            f"PARAMETER temperature {self.generation.temperature:g}",
            f"PARAMETER top_p {self.generation.top_p:g}",
            f"PARAMETER repeat_penalty {self.generation.repeat_penalty:g}",
        ]
        return "\n".join(lines) + "\n"


def chatml(messages: Sequence[dict[str, str]]) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)


def default_system(tokenizer: Any) -> tuple[bool, str | None]:
    """(whether the run's template renders ChatML, the system prompt it adds when none is given)."""

    def render(messages: Sequence[dict[str, str]]) -> str:
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    header = "<|im_start|>assistant\n"
    with_system = [{"role": "system", "content": "a given system prompt"}, *PROBE]
    if render(with_system) != chatml(with_system) + header:
        return False, None
    plain = render(PROBE)
    body = chatml(PROBE) + header
    if plain == body:
        return True, None
    prefix = plain[: -len(body)] if plain.endswith(body) else None
    start, end = "<|im_start|>system\n", "<|im_end|>\n"
    if prefix and prefix.startswith(start) and prefix.endswith(end):
        return True, prefix[len(start) : -len(end)]
    return False, None


def modelfile_for(tokenizer: Any, stop_ids: list[int], generation: Generation) -> Modelfile | None:
    """The Modelfile, or None when the run's chat template is not one written here (Ollama would guess)."""
    is_chatml, system = default_system(tokenizer)
    if not is_chatml or '"""' in (system or ""):
        return None
    stops = [tokenizer.convert_ids_to_tokens(i) for i in stop_ids]
    return Modelfile(CHATML, system, stops, generation)
