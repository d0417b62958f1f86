"""A GGUF file read back by llama.cpp itself (llama-cpp-python), the way llama-server or Ollama would run it:
prompts rendered by the chat template inside the file and tokenized by llama.cpp, greedy answers that end
where llama.cpp's end-of-generation tokens say, and next-token choices along the run's own answers. The
server's llama.cpp engine writes its answers with the same class (`generate`)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tunesmith.generation import GenerationSettings, TokenObserver
from tunesmith.hardware import cpu_features
from tunesmith.processes import usable_cores

INSTALL_HINT = "pip install 'tunesmith[gguf]' (builds llama.cpp from the sources in llama-cpp-python)"


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


@contextmanager
def plain_weight_buffers() -> Iterator[None]:
    """On a CPU with AMX, a Llama constructed inside keeps its weights in plain CPU buffers: llama.cpp would
    repack q8_0 and k-quant weights into its AMX buffer, whose matrix multiply crashes (SIGSEGV) on some
    AMX machines (ggml-org/llama.cpp#20824; seen here on a virtualised Sapphire Rapids with q8_0). The
    Python binding builds the model parameters itself, so its default parameters are swapped for the
    construction (llama.cpp's `--no-repack`: use_extra_bufts off); f16 and f32 files are not repacked
    anyway. Elsewhere nothing changes."""
    import llama_cpp.llama_cpp as native

    if "amx_int8" not in cpu_features().flags:
        yield
        return
    defaults = native.llama_model_default_params

    def without_repacking():  # type: ignore[no-untyped-def]
        params = defaults()
        params.use_extra_bufts = False
        return params

    native.llama_model_default_params = without_repacking
    try:
        yield
    finally:
        native.llama_model_default_params = defaults


@dataclass
class LlamaOutputs:
    prompt_ids: list[list[int]]
    """Each conversation rendered by the file's chat template and tokenized by llama.cpp."""
    tokens: list[list[int]]
    """Greedy answers, at most `new_tokens`, without the end-of-generation token that stopped them."""
    agreement: float
    """Share of the reference answers' tokens that llama.cpp also ranks first, given the same prefix."""
    loss: tuple[float, int] = (0.0, 0)
    """(summed negative log-likelihood, token count) of the held-out sequences' supervised tokens."""


class LlamaFile:
    """One GGUF file loaded by llama.cpp on the CPU. `scores=False` keeps no logits for earlier positions
    (enough to generate; `agreement` and `label_loss` need them)."""

    def __init__(self, path: Path, context: int = 1024, scores: bool = True):
        from llama_cpp import Llama

        self.context = context
        with plain_weight_buffers():
            self.llm = Llama(
                str(path),
                n_ctx=context,
                n_threads=usable_cores(),
                logits_all=scores,
                verbose=False,
                n_gpu_layers=0,
            )

    def close(self) -> None:
        self.llm.close()

    def render(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """The prompt tokens for `messages` as llama.cpp's own chat path makes them."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        formatter = Jinja2ChatFormatter(
            self.llm.metadata["tokenizer.chat_template"],
            eos_token=self._token_text(self.llm.token_eos()),
            bos_token=self._token_text(self.llm.token_bos()),
            add_generation_prompt=True,
        )
        prompt = formatter(messages=list(messages)).prompt
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def _token_text(self, token: int) -> str:
        """A special token's text ("" for none: llama.cpp's id -1)."""
        return self.llm.detokenize([token], special=True).decode() if token >= 0 else ""

    def greedy(self, prompt: list[int], new_tokens: int) -> list[int]:
        import llama_cpp

        vocab = self.llm._model.vocab  # the model's vocabulary handle: llama.cpp's own end-of-generation test
        self.llm.reset()
        out: list[int] = []
        for token in self.llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
            if llama_cpp.llama_vocab_is_eog(vocab, token) or len(out) >= new_tokens:
                break
            out.append(token)
        return out

    def generate(
        self, prompt: list[int], settings: GenerationSettings, observer: TokenObserver | None = None
    ) -> list[int]:
        """New tokens after `prompt` (without the end-of-generation token that stopped them): greedy, or
        sampled with the settings' temperature and top-p and their seed (no top-k or min-p cut, as in
        transformers' sampling with those two). `observer` sees each token and may end the answer early. The
        cached prompt prefix of the previous call is reused (a shared system prompt is not read again)."""
        import llama_cpp

        vocab = self.llm._model.vocab
        sampled = settings.do_sample
        if sampled:
            self.llm.set_seed(settings.seed)
        out: list[int] = []
        for token in self.llm.generate(
            prompt,
            temp=settings.temperature if sampled else 0.0,
            top_p=settings.top_p if sampled else 1.0,
            top_k=0,
            min_p=0.0,
            repeat_penalty=settings.repetition_penalty,
        ):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            out.append(token)
            if observer is not None:
                observer.put(token)
                if observer.stopped:
                    break
            if len(out) >= settings.max_new_tokens:
                break
        return out

    def agreement(self, prompt: list[int], answer: list[int]) -> tuple[int, int]:
        """(tokens of `answer` llama.cpp ranks first after the prompt and the answer's earlier tokens, total)."""
        if not answer:
            return 0, 0
        scores = self.answer_scores(prompt, answer)
        return int((scores.argmax(axis=-1) == np.asarray(answer)).sum()), len(answer)

    def label_loss(self, input_ids: list[int], labels: list[int], ignore: int = -100) -> tuple[float, int]:
        """(summed negative log-likelihood, count) of the tokens `labels` supervises (labels aligned with
        `input_ids`, `ignore` elsewhere: a training feature, as the run's own loss reads it)."""
        wanted = [j for j in range(1, len(labels)) if labels[j] != ignore]
        if not wanted:
            return 0.0, 0
        self.llm.reset()
        self.llm.eval(input_ids)
        scores = torch.from_numpy(np.asarray(self.llm.scores[[j - 1 for j in wanted]])).double()
        targets = torch.tensor([labels[j] for j in wanted])
        return float(torch.nn.functional.cross_entropy(scores, targets, reduction="sum")), len(wanted)

    def answer_scores(self, prompt: list[int], answer: list[int]) -> np.ndarray:
        """llama.cpp's next-token logits at each of `answer`'s positions (teacher-forced)."""
        self.llm.reset()
        self.llm.eval(prompt + answer)
        return np.asarray(self.llm.scores[len(prompt) - 1 : len(prompt) - 1 + len(answer)])


def read_outputs(
    path: Path,
    conversations: Sequence[Sequence[dict[str, str]]],
    references: Sequence[list[int]],
    new_tokens: int,
    held_out: Sequence[tuple[list[int], list[int]]] = (),
) -> LlamaOutputs:
    """llama.cpp's prompts, greedy answers and agreement with `references` (the run's greedy answers, each
    scored after llama.cpp's rendering of its conversation), and its loss on `held_out` (input ids, labels)."""
    file = LlamaFile(path, context=max([1024, *(len(ids) + 1 for ids, _ in held_out)]))
    try:
        prompts = [file.render(messages) for messages in conversations]
        tokens = [file.greedy(prompt, new_tokens) for prompt in prompts]
        counts = [file.agreement(prompt, ref) for prompt, ref in zip(prompts, references, strict=True)]
        losses = [file.label_loss(ids, labels) for ids, labels in held_out]
    finally:
        file.close()
    agreed, total = (sum(c[i] for c in counts) for i in (0, 1))
    loss = (sum(x[0] for x in losses), sum(x[1] for x in losses))
    return LlamaOutputs(prompts, tokens, agreed / total if total else 1.0, loss)


def quantize(source: Path, target: Path, quant: str) -> None:
    """llama.cpp's own quantizer (llama_model_quantize) from an f16 GGUF to a K-quant."""
    import ctypes

    import llama_cpp

    kind = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = kind
    params.nthread = usable_cores()
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if code != 0:
        raise RuntimeError(f"llama.cpp's quantizer failed ({code}) making {quant} from {source.name}")
